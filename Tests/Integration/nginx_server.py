"""nginx with a recipe from deploy/nginx/ as shipped, only its port and socket path changed (as lib.sh's nginx_with
does), started and stopped by a Python test (restart.py, status.py)."""
import os, socket, subprocess

from checks import free_port, wait_until

RECIPES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "deploy", "nginx")


class Nginx:
    """nginx with the recipe as shipped, only its port and socket path changed (as lib.sh's nginx_with does)."""

    def __init__(self, work, socket_path, recipe="webhook.conf", user=None):
        """`user`: the user of nginx's workers (default: nobody), e.g. www-data for a socket of group www-data."""
        self.port = free_port()
        self.error_log = os.path.join(work, "nginx-error.log")
        with open(os.path.join(RECIPES, recipe)) as f:
            text = f.read()
        # the status page's own loopback-only listener, in the recipes that have one
        self.status_port = free_port() if "listen 127.0.0.1:8081;" in text else None
        site = text.replace("listen 127.0.0.1:8080;", "listen 127.0.0.1:%d;" % self.port) \
            .replace("listen 127.0.0.1:8081;", "listen 127.0.0.1:%d;" % (self.status_port or 0)) \
            .replace("unix:/run/webhook-handler/webhook.sock", "unix:" + socket_path) \
            .replace("include fastcgi_params;", "include /etc/nginx/fastcgi_params;")
        conf = os.path.join(work, "nginx.conf")
        temp = "".join("%s_temp_path %s/%s;\n" % (kind, work, kind) for kind in ["client_body", "fastcgi", "proxy", "uwsgi", "scgi"])
        with open(conf, "w") as f:
            f.write(("user %s;\n" % user if user else "") +
                    "daemon off;\nworker_processes 2;\npid %s/nginx.pid;\nerror_log %s info;\n"
                    "events { worker_connections 1024; }\nhttp {\n access_log off;\n%s%s\n}\n"
                    % (work, self.error_log, temp, site))
        self.process = subprocess.Popen(["nginx", "-e", self.error_log, "-c", conf], stdin=subprocess.DEVNULL)
        try:
            started(lambda: connectable(self.port) and (self.status_port is None or connectable(self.status_port)),
                    "nginx")
        except RuntimeError:
            self.stop()  # never leave it running behind a failed start
            raise

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)

    def problems(self):
        """Lines of nginx's error log at level error or worse (a dropped upstream connection is one)."""
        with open(self.error_log, errors="replace") as f:
            return [line.strip() for line in f if any(level in line for level in ("[error]", "[crit]", "[alert]", "[emerg]"))]


def connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def started(condition, what):
    if not wait_until(condition):
        raise RuntimeError("timed out waiting for " + what)
