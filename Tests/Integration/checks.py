"""What the Python integration tests share: the `ok`/`FAIL` lines and the closing `N passed, N failed` line that
CI reads, polling for a condition, free ports, the handler as a CGI (a signed request's environment, the
response read back), and one request on a raw FastCGI connection."""
import hashlib, hmac, re, socket, struct, tempfile, time


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def expect(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print("ok   " + name, flush=True)
        else:
            self.failed += 1
            print("FAIL %s %s" % (name, detail), flush=True)

    def run(self, prefix, tests):
        """Runs each test(work) in one temporary directory; a test that cannot even run is a failure, not a crash of
        the suite. Returns the exit status (``summary``)."""
        with tempfile.TemporaryDirectory(prefix=prefix) as work:
            for test in tests:
                try:
                    test(work)
                except Exception as error:
                    self.expect("%s ran" % test.__name__, False, repr(error))
        return self.summary()

    def summary(self):
        """Prints the closing line; returns the exit status."""
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


def children(pid):
    """The pids of `pid`'s children (none if it is gone)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def wait_until(condition, seconds=10):
    """Polls `condition` for up to `seconds`; returns its last answer."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def parse_cgi(raw):
    """(status, lower-cased headers, body) of a CGI response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode(errors="replace").split("\r\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(headers.get("status", "0")[:3] or 0), headers, body


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def x_signature(secret, body):
    """What the sender puts in x-signature: the hex HMAC-SHA256 of the raw body, keyed with the secret."""
    return hmac.new(secret if isinstance(secret, bytes) else secret.encode(), body, hashlib.sha256).hexdigest()


def signed_cgi_environment(secret, body, spool=None, method="POST", **extra):
    """What a web server gives the handler as a CGI for `body`, signed with `secret` as the sender signs."""
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "CONTENT_LENGTH": str(len(body)),
           "CONTENT_TYPE": "application/json", "REMOTE_ADDR": "127.0.0.1", "API_SECRET_KEY": secret,
           "HTTP_X_SIGNATURE": x_signature(secret, body), "PATH": "/usr/bin:/bin"}
    if spool:
        env["WEBHOOK_SPOOL_DIR"] = spool
    env.update(extra)
    return env


def fcgi_request(client, params, keep=True, body=b""):
    """One request on a raw FastCGI connection (BEGIN_REQUEST with FCGI_KEEP_CONN if `keep`): (status, body)."""
    def record(kind, content):
        return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content
    encoded = b""
    for name, value in params.items():
        for item in (name.encode(), value.encode()):
            encoded += bytes([len(item)]) if len(item) < 128 else struct.pack(">I", len(item) | 0x80000000)
        encoded += name.encode() + value.encode()
    client.sendall(record(1, struct.pack(">HB5x", 1, 1 if keep else 0)) + record(4, encoded) + record(4, b"")
                   + (record(5, body) if body else b"") + record(5, b""))
    data, out = b"", b""
    while True:
        while len(data) < 8 or len(data) < 8 + struct.unpack(">H", data[4:6])[0] + data[6]:
            chunk = client.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed mid-response")
            data += chunk
        kind, length, padding = data[1], struct.unpack(">H", data[4:6])[0], data[6]
        if kind == 6:
            out += data[8:8 + length]
        data = data[8 + length + padding:]
        if kind == 3:
            head, _, body = out.partition(b"\r\n\r\n")
            found = re.search(rb"Status: (\d+)", head)
            return (int(found.group(1)) if found else 200), body
