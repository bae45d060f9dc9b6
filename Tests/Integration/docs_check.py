#!/usr/bin/env python3
"""The documentation holds together: every relative link and #anchor in README.md and docs/ resolves, and every
command-line option that the binaries' --help prints (every subcommand, recursively) is documented in docs/.

Usage: docs_check.py HANDLER FORWARDER   (the built binaries; run from anywhere)
"""
import pathlib
import re
import subprocess
import sys
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from checks import Checks  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|<a\s+href=\"([^\"]+)\"")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files():
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def prose_lines(path):
    """The lines of a Markdown file outside fenced code blocks."""
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, blanks turned into hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path):
    seen, result = {}, set()
    for line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links():
    broken = []
    for path in markdown_files():
        for line in prose_lines(path):
            for match in LINK.finditer(line):
                target = match.group(1) or match.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: … — not ours to check
                    continue
                file_part, _, anchor = target.partition("#")
                destination = (path.parent / urllib.parse.unquote(file_part)).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}: {target}"
                if not destination.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                    broken.append(f"{where} (no such heading)")
    return broken


def help_text(binary, path):
    run = subprocess.run([binary, "help", *path], capture_output=True, text=True, timeout=20)
    return run.stdout + run.stderr


def section(text, title):
    """The lines of one section (OPTIONS:, SUBCOMMANDS:) of argument-parser's help."""
    lines, inside = [], False
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]*:$", line.strip()) and not line.startswith(" "):
            inside = line.strip() == title
            continue
        if inside:
            lines.append(line)
    return lines


def options(binary, path=()):
    """Every (command path, --option) the binary's help prints, walking its subcommands."""
    text = help_text(binary, list(path))
    found = set()
    for line in section(text, "OPTIONS:"):
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line.split("  ")[1] if line.startswith("  ") else line):
            if option not in ("--help", "--version"):
                found.add((" ".join(path), option))
    for line in section(text, "SUBCOMMANDS:"):
        match = re.match(r"^  ([a-z][a-z0-9-]*)\b", line)
        if match:
            found |= options(binary, (*path, match.group(1)))
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    checks = Checks()
    broken = broken_links()
    checks.expect("every relative link and anchor in README.md and docs/ resolves", not broken, "; ".join(broken))
    documented = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").rglob("*.md")))
    for binary in sys.argv[1:]:
        name = pathlib.Path(binary).name
        found = options(binary)
        checks.expect(f"{name}: --help lists options to check", len(found) > 3, f"found {sorted(found)}")
        missing = sorted(f"{name} {command} {option}".replace("  ", " ")
                         for command, option in found
                         if not re.search(re.escape(option) + r"(?![a-z0-9-])", documented))
        checks.expect(f"{name}: every option its --help prints is documented in docs/", not missing,
                      "undocumented: " + ", ".join(missing))
    sys.exit(checks.summary())


if __name__ == "__main__":
    main()
