#!/usr/bin/env python3
"""Drift between the recipes in deploy/ and what README.md, docs/ and the recipes' own comments say about them.

Every rule reads the files as shipped and checks one kind of statement against the thing it is about:
  paths      every repository path a text names (deploy/..., Tests/..., `cp FILE` in a recipe folder) exists
  options    every --option a webhook-handler / webhook.cgi / webhook-forwarder command uses is in that
             (sub)command's --help
  sockets    every place that names the handler's socket names the same path (nginx, Apache, systemd, Debian,
             --listen, spawn-fcgi -s)
  modes      every socket mode agrees (SocketMode=, --socket-mode, spawn-fcgi -M, the --help default)
  ports      a text that installs an nginx recipe says the address that recipe listens on
  locations  "N location blocks" matches the number of location blocks of the recipe(s) meant
  json-413   every nginx block that limits the body (client_max_body_size) answers nginx's own 413 with JSON,
             read from the file and asked of a real nginx serving it (a 3 MB POST)
  secrets    no text or message asks for a per-request secret, which the handler refuses
  senders    with the unit's DynamicUser=, the senders' secrets are documented as one LoadCredential= per sender
  purge      each Apache configuration the Debian package installs is disabled when the package is purged
Usage: Tests/Integration/recipes.py PATH/TO/webhook-handler   (webhook-forwarder is looked for beside it)
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BINARIES = ("webhook-handler", "webhook.cgi", "webhook-forwarder")
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def texts():
    """Every document and recipe a user reads: README.md, docs/, deploy/ (text files)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".sh")
    out = []
    for path in files:
        try:
            out.append((path, path.read_text()))
        except (UnicodeDecodeError, IsADirectoryError):
            pass
    return out


def rel(path):
    return str(path.relative_to(ROOT))


# --- nginx configuration, parsed just enough: blocks of directives --------------------------------------------------

def nginx_blocks(text):
    """A tree of (name, args, children) from nginx configuration text, comments stripped."""
    text = re.sub(r"#[^\n]*", "", text)
    tokens = re.findall(r"'[^']*'|\"[^\"]*\"|[{};]|[^\s{};]+", text)
    root = ("", [], [])
    stack, words = [root], []
    for token in tokens:
        if token == "{":
            block = (words[0] if words else "", words[1:], [])
            stack[-1][2].append(block)
            stack.append(block)
            words = []
        elif token == ";":
            if words:
                stack[-1][2].append((words[0], words[1:], None))
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token)
    return root


def walk(block, parents=()):
    yield block, parents
    for child in block[2] or []:
        if child[2] is not None:
            yield from walk(child, parents + (block,))


def directives(block, name):
    return [d for d in block[2] or [] if d[2] is None and d[0] == name]


def nginx_recipes():
    return [(p, nginx_blocks(p.read_text())) for p in sorted((DEPLOY / "nginx").glob("*.conf"))]


# --- the rules ------------------------------------------------------------------------------------------------------

def rule_paths(docs):
    problems = []
    tops = "deploy|Tests|scripts|bench|docs|Sources|Fuzz"
    for path, text in docs:
        for match in re.finditer(rf"(?<![\w/.-])((?:{tops})/[\w./+-]*[\w+])", text):
            name = match.group(1)
            if not (ROOT / name).exists() and not (ROOT / name.rstrip("/")).exists():
                problems.append(f"{rel(path)} names {name}, which does not exist")
        if path.parent.parent == DEPLOY:  # `cp FILE ...` / `install ... FILE ...` in a recipe folder
            for line in text.splitlines():
                for command in re.findall(r"\b(?:cp|install)\s+([^|;&`#]*)", line):
                    words = [w for w in command.split() if not w.startswith("-")][:-1]  # the last is the target
                    for word in words:
                        if "/" not in word and re.fullmatch(r"[\w.-]+\.(conf|service|socket|cgi|md)|\.htaccess", word) \
                                and not (path.parent / word).exists():
                            problems.append(f"{rel(path)}: `{line.strip()}` copies {word}, not in {rel(path.parent)}")
    return problems


def help_text(binary, words, cache={}):
    key = (binary, tuple(words))
    if not os.path.exists(binary):
        return None
    if key not in cache:
        run = subprocess.run([binary, *words, "--help"], capture_output=True, text=True,
                             env={"PATH": os.environ.get("PATH", "")})
        cache[key] = run.stdout + run.stderr if run.returncode == 0 else None
    return cache[key]


def subcommands(binary, words):
    """The subcommands the (sub)command `words` lists in its --help, with the default one first."""
    text = help_text(binary, words) or ""
    listed = re.findall(r"^  (\S+)( \(default\))?", text.split("SUBCOMMANDS:", 1)[1], re.M) if "SUBCOMMANDS:" in text else []
    return sorted((name for name, _ in listed), key=lambda name: not any(n == name and d for n, d in listed))


def commands(text):
    """(binary, words) for each command naming one of our binaries, bare or in a bin/ (or the shared-hosting
    webhook/, api/) folder; a command ends at |, ;, &, `, ) or a comment."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s`'\"=(])(?:[\w.~$/-]*/(?:bin|webhook|api)/)?"
                                 r"(webhook-handler|webhook\.cgi|webhook-forwarder)(?=[ \t]|$)", line):
            rest = re.split(r"[|;&`)]|\s#", line[match.end():])[0]
            yield match.group(1), rest.split()


def rule_options(docs, handler):
    binaries = {"webhook-handler": handler, "webhook.cgi": handler,
                "webhook-forwarder": str(Path(handler).parent / "webhook-forwarder")}
    problems = []
    for path, text in docs:
        for name, words in commands(text):
            binary = binaries[name]
            if not os.path.exists(binary):
                continue
            sub = []
            for word in words:  # the longest run of leading words that is a (sub)command
                if word.strip("[]") not in subcommands(binary, sub):
                    break
                sub.append(word.strip("[]"))
            known = help_text(binary, sub) or ""
            children = subcommands(binary, sub)
            if children:  # options may belong to the default subcommand
                known += help_text(binary, sub + children[:1]) or ""
            for word in words:
                option = re.match(r"--[a-z][a-z0-9-]*", word.strip("[]`'\""))
                if option and not re.search(rf"(?<![\w-]){re.escape(option.group(0))}(?![\w-])", known):
                    problems.append(f"{rel(path)}: `{name} {' '.join(sub)}` has no {option.group(0)} "
                                    f"(not in its --help)")
    return sorted(set(problems))


def socket_statements(docs):
    """(file, what, path) for every place naming the handler's FastCGI socket."""
    found = []
    for path, text in docs:
        for what, pattern in (
            ("ListenStream=", r"^ListenStream=(/\S+)"),
            ("nginx unix:", r"(?:fastcgi_pass|server)\s+unix:(/[^\s;]+)"),
            ("Apache proxy:unix:", r"proxy:unix:(/[^|\s\"]+)"),
            ("--listen", r"--listen[ =](/[^\s`);]+)"),
            ("spawn-fcgi -s", r"spawn-fcgi\b[^`\n]*?\s-s\s+(/[^\s`);]+)"),
        ):
            for match in re.finditer(pattern, text, re.M):
                if "fcgiwrap" not in match.group(1) and "SOCKET" not in match.group(1):
                    found.append((path, what, match.group(1)))
    return found


def rule_sockets(docs):
    found = socket_statements(docs)
    units = [p for p, what, _ in found if what == "ListenStream="]
    reference = next((s for p, w, s in found if w == "ListenStream=" and p.parent == DEPLOY / "systemd"), None)
    if reference is None:
        return ["no ListenStream= in deploy/systemd/: nothing to compare the socket paths with"] if units else []
    return [f"{rel(p)}: {w} {s}, but deploy/systemd's socket is {reference}" for p, w, s in found if s != reference]


def rule_modes(docs, handler):
    found = []
    for path, text in docs:
        for what, pattern in (("SocketMode=", r"^SocketMode=(\d+)"), ("--socket-mode", r"--socket-mode[ =](\d+)"),
                              ("spawn-fcgi -M", r"spawn-fcgi\b[^`\n]*?\s-M\s+(\d+)")):
            found += [(path, what, m.group(1)) for m in re.finditer(pattern, text, re.M)]
    default = re.search(r"--socket-mode <mode>[^\n]*(?:\n {20,}[^\n]*)*?\(default: ?(\d+)\)", help_text(handler, ["serve"]) or "")
    modes = {m.zfill(4) for _, _, m in found} | ({default.group(1).zfill(4)} if default else set())
    if len(modes) <= 1:
        return []
    where = "; ".join(f"{rel(p)} {w} {m}" for p, w, m in found)
    return [f"the handler's socket mode is given as {', '.join(sorted(modes))}"
            + (f" (--help default {default.group(1)})" if default else "") + f": {where}"]


def sections(text):
    """The text cut at markdown headings outside code blocks (a recipe's whole comment is one section)."""
    cut, fenced = [[]], False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,6} ", line):
            cut.append([])
        cut[-1].append(line)
    return ["\n".join(lines) for lines in cut]


def rule_ports(docs):
    listens = {}
    for path, tree in nginx_recipes():
        for block, _ in walk(tree):
            for d in directives(block, "listen"):
                listens.setdefault(path.name, set()).add(d[1][0])
    problems = []
    for path, text in docs:
        if path.suffix != ".md":
            continue
        for section in sections(text):
            for match in re.finditer(r"\bcp\s+(?:[^\s|;&`]*/)?((?:webhook[\w-]*)\.conf)\b", section):
                recipe = match.group(1)
                if path.parent != DEPLOY / "nginx" and "nginx" not in section[max(0, match.start() - 40):match.end()]:
                    continue
                for address in sorted(listens.get(recipe, ())):
                    if address not in section:
                        heading = section.strip().splitlines()[0][:60]
                        problems.append(f"{rel(path)} ({heading}) installs {recipe}, which listens on {address}, "
                                        "without saying so")
    return sorted(set(problems))


def rule_locations(docs):
    counts, per_server = {}, {}
    for path, tree in nginx_recipes():
        counts[path.name] = sum(1 for block, _ in walk(tree) if block[0] == "location")
        per_server[path.name] = {sum(1 for b, _ in walk(server) if b[0] == "location")
                                 for server, _ in walk(tree) if server[0] == "server"}
    problems = []
    for path, text in docs:
        for match in re.finditer(r"\b(\w+) `?location`? blocks?\b", text):
            said = NUMBERS.get(match.group(1).lower()) or (int(match.group(1)) if match.group(1).isdigit() else None)
            if said is None:
                continue
            meant = [path.name] if path.name in counts else (
                [n for n in counts if any(b[0] == "server" for b, _ in walk(nginx_blocks((DEPLOY / "nginx" / n).read_text())))]
                if path.parent == DEPLOY / "nginx" else [])
            for name in meant:  # the whole file's count, or one server block's
                if said != counts[name] and said not in per_server[name]:
                    problems.append(f"{rel(path)} says \"{match.group(0)}\"; {name} has {counts[name]}")
    return problems


def rule_json_413(docs):
    problems = []
    for path, tree in nginx_recipes():
        named = {block[1][0]: block for block, _ in walk(tree) if block[0] == "location" and block[1][:1] and
                 block[1][0].startswith("@")}
        for block, parents in walk(tree):
            if not directives(block, "client_max_body_size"):
                continue
            pages = [d for b in (block, *parents) for d in directives(b, "error_page") if "413" in d[1]]
            target = pages[0][1][-1] if pages else None
            answer = named.get(target)
            json = answer is not None and any("application/json" in d[1] for d in directives(answer, "default_type")) \
                and any(d[1][:1] == ["413"] and d[1][-1].startswith("'{") for d in directives(answer, "return"))
            if not json:
                where = f"location {' '.join(block[1])}" if block[0] == "location" else block[0] or "top level"
                problems.append(f"{rel(path)} ({where}) limits the body without a JSON error_page 413 "
                                 "(nginx's own 413 is HTML)")
    return problems


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_413(path, tree):
    """What a real nginx serving the recipe (a snippet inside a server block) answers to a 3 MB POST on each
    server's /api/webhook: [(status, content type, body)]. The body is refused before anything is passed on."""
    with tempfile.TemporaryDirectory() as work:
        text = path.read_text().replace("include fastcgi_params;", "include /etc/nginx/fastcgi_params;")
        ports = []
        def listen(match):
            ports.append(free_port())
            return f"{match.group(1)}listen 127.0.0.1:{ports[-1]};"
        text = re.sub(r"^(\s*)listen\s+[^;\n]+;", listen, text, flags=re.M)
        if not any(b[0] == "server" for b, _ in walk(tree)):
            ports.append(free_port())
            text = f"server {{\n listen 127.0.0.1:{ports[-1]};\n{text}\n}}\n"
        served = [port for port, server in zip(ports, [b for b, _ in walk(nginx_blocks(text)) if b[0] == "server"])
                  if any(b[0] == "location" and b[1][-1:] == ["/api/webhook"] for b, _ in walk(server))]
        Path(work, "site.conf").write_text(text)
        Path(work, "nginx.conf").write_text(
            f"daemon off; pid {work}/nginx.pid; error_log {work}/error.log warn; events {{}}\n"
            f"http {{ access_log off; client_body_temp_path {work}/body; include {work}/site.conf; }}\n")
        nginx = subprocess.Popen(["nginx", "-e", f"{work}/error.log", "-c", f"{work}/nginx.conf"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        answers = []
        try:
            for port in served:
                for _ in range(200):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/webhook", data=b"a" * 3_000_000)
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        answers.append((response.status, response.headers.get("Content-Type"), response.read()))
                except urllib.error.HTTPError as error:
                    answers.append((error.code, error.headers.get("Content-Type"), error.read()))
                except OSError as error:
                    answers.append((None, None, str(error).encode()))
        finally:
            os.killpg(nginx.pid, signal.SIGTERM)
            nginx.wait(timeout=10)
        return answers


def rule_json_413_live(docs):
    problems = []
    for path, tree in nginx_recipes():
        if not any(block[0] == "location" and any(a.startswith("/api/") for a in block[1]) for block, _ in walk(tree)):
            continue  # serves no webhook (the status listener): nothing to send a body to
        answers = nginx_413(path, tree)
        if not answers:
            problems.append(f"{rel(path)}: no server block serving /api/webhook to ask")
        for status, content_type, body in answers:
            if status != 413 or not (content_type or "").startswith("application/json"):
                problems.append(f"{rel(path)}: real nginx answers a 3 MB POST with {status} {content_type} "
                                f"{body[:80]!r}, not a JSON 413")
    return problems


def rule_secrets(docs):
    problems = []
    for path in sorted((ROOT / "Sources").rglob("*.swift")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"per-request API_SECRET_KEY|API_SECRET_KEY\S* (?:per|in each|with each) request", line):
                problems.append(f"{rel(path)}:{number} asks for a per-request API_SECRET_KEY, which is refused")
    for path, tree in nginx_recipes():
        for block, _ in walk(tree):
            passes = [d[1][0] for d in directives(block, "fastcgi_pass")]
            if passes and not any("fcgiwrap" in p for p in passes):
                for d in directives(block, "fastcgi_param"):
                    if d[1][0].startswith("API_SECRET_KEY"):
                        problems.append(f"{rel(path)} passes {d[1][0]} to the FastCGI handler, which refuses it")
    return problems


def rule_senders(docs):
    unit = (DEPLOY / "systemd" / "webhook-handler.service").read_text()
    if not re.search(r"^DynamicUser=(yes|true|1)", unit, re.M):
        return []
    named = [rel(p) for p, t in docs if re.search(r"--secrets-dir|WEBHOOK_SECRETS_DIR", t)]
    documented = any(re.search(r"LoadCredential=[\w-]+\.secret:", t) and re.search(
        r"(--secrets-dir|WEBHOOK_SECRETS_DIR)[ =](%d|\$\{?CREDENTIALS_DIRECTORY)", t) for _, t in docs)
    if named and not documented:
        return ["deploy/systemd's unit runs with DynamicUser=, so no file can be made readable by its user, yet "
                f"{', '.join(named)} name a senders' directory: no text shows one LoadCredential=NAME.secret:... "
                "per sender with --secrets-dir %d (or WEBHOOK_SECRETS_DIR=%d)"]
    return []


def rule_purge(docs):
    debian = DEPLOY / "debian" / "debian"
    problems = []
    for install in sorted(debian.glob("*.install")):
        package = install.name[: -len(".install")]
        for line in install.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[1].rstrip("/") == "etc/apache2/conf-available":
                conf = Path(words[0]).stem
                postrm = debian / f"{package}.postrm"
                text = postrm.read_text() if postrm.exists() else ""
                purge = text[text.find("purge"):] if "purge" in text else ""
                # a2disconf NAME, or apache2_invoke disconf NAME (or $conf in a loop naming NAME, as dh_apache2 writes)
                if not (re.search(r"\b(a2disconf|apache2_invoke disconf)\b", purge) and re.search(rf"\b{re.escape(conf)}\b", purge)):
                    problems.append(f"{package} installs /etc/apache2/conf-available/{conf}.conf but its postrm "
                                    f"does not disable it on purge (a2disconf / apache2_invoke disconf {conf}): "
                                    "a conf-enabled link to a deleted file stops Apache")
    return problems


def main():
    handler = os.path.realpath(sys.argv[1]) if len(sys.argv) > 1 else sys.exit(__doc__)
    docs = texts()
    rules = [("paths", lambda: rule_paths(docs)), ("options", lambda: rule_options(docs, handler)),
             ("sockets", lambda: rule_sockets(docs)), ("modes", lambda: rule_modes(docs, handler)),
             ("ports", lambda: rule_ports(docs)), ("locations", lambda: rule_locations(docs)),
             ("json-413", lambda: rule_json_413(docs) + rule_json_413_live(docs)),
             ("secrets", lambda: rule_secrets(docs)),
             ("senders", lambda: rule_senders(docs)), ("purge", lambda: rule_purge(docs))]
    failed = 0
    for name, rule in rules:
        problems = rule()
        print(f"{'ok  ' if not problems else 'FAIL'} {name}")
        for problem in problems:
            print(f"       {problem}")
        failed += bool(problems)
    print(f"{len(rules) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
