"""A PostgreSQL server of a test's own, started and stopped by it on 127.0.0.1 (Tests/Integration/postgres.py,
bench/forward.py)."""
import hashlib, json, os, re, shutil, subprocess

from checks import free_port

BIN = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()


class Postgres:
    """A PostgreSQL server of its own: initdb into a private directory, trust on 127.0.0.1, run as `postgres`
    (PostgreSQL refuses root)."""

    def __init__(self, work, name):
        self.directory = os.path.join(work, name)
        os.makedirs(self.directory)
        shutil.chown(self.directory, "postgres", "postgres")
        self.port = free_port()
        self.as_postgres([os.path.join(BIN, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()

    data = property(lambda self: os.path.join(self.directory, "data"))
    url = property(lambda self: "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5" % self.port)

    def as_postgres(self, command):
        subprocess.run(["runuser", "-u", "postgres", "--"] + command, check=True, capture_output=True)

    def start(self):
        self.as_postgres([os.path.join(BIN, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.directory, "log"),
                          "-w", "-o", "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on" % (self.port, self.directory),
                          "start"])

    def stop(self):
        self.as_postgres([os.path.join(BIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])

    def database(self, name):
        """A fresh database `name` on this server; returns its URL (no connect_timeout: libpq's defaults are ours)."""
        self.sql("DROP DATABASE IF EXISTS %s" % name)
        self.sql("CREATE DATABASE %s" % name)
        return "host=127.0.0.1 port=%d user=postgres dbname=%s" % (self.port, name)

    def sql(self, query, url=None):
        done = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url or self.url, "-c", query],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return done.stdout.strip()


def pgbench_inserts(pg, clients, seconds, work):
    """Transactions per second of pgbench inserting one 1 KiB row per transaction into `pg` (synchronous_commit on,
    the server's default): the anchor for anything that makes payloads durable."""
    script = os.path.join(work, "insert.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO bench_rows (id, body) VALUES (md5(random()::text || clock_timestamp()::text), "
                "convert_to(repeat('x', 1024), 'UTF8'));\n")
    os.chmod(script, 0o644)
    pg.sql("CREATE TABLE IF NOT EXISTS bench_rows (id text PRIMARY KEY, body bytea NOT NULL)")
    done = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), "-f",
                           script, pg.url], capture_output=True, text=True)
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    if not found:
        raise RuntimeError(done.stdout + done.stderr)
    return float(found.group(1))


def spool_of(directory, count, size=1000, tag=""):
    """A handler's spool with `count` payloads of about `size` bytes in new/, written directly (as the handler
    writes them, without running it `count` times); returns their ids."""
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    ids = []
    for n in range(count):
        body = json.dumps({"n": n, "tag": tag, "pad": "x" * size}).encode()
        ident = hashlib.sha256(body).hexdigest()
        envelope = {"id": ident, "received": "2026-11-30T00:00:00.000Z", "remote_addr": "127.0.0.1",
                    "content_type": "application/json", "sender": None, "scheme": "x-signature", "length": len(body)}
        with open(os.path.join(directory, "new", ident), "wb") as f:
            f.write(json.dumps(envelope, separators=(",", ":")).encode() + b"\n" + body)
        ids.append(ident)
    return ids
