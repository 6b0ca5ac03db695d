#!/usr/bin/env python3
"""Layering checks that the compiler does not make (run by scripts/test):

1. No module cycles inside a crate: module A naming `crate::b` while b names `crate::a`
   (top-level modules; lib.rs/main.rs, which declare and re-export them, are not nodes).
2. No page or route reads the store: crates/web and crates/server reach data only through the
   service (`musubi_store` and `.store()` do not appear in their sources).

Prints each finding with its file (and line) and exits 1 if there is any. `--self-test` first
checks that check 2 finds a planted store read at its line."""
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = os.path.join(ROOT, "crates")
# Rust's own names after `crate::` that are not modules of the crate.
NOT_MODULES = {"self"}


def strip_comments(text):
    """Drops comments; a block comment keeps its line breaks, so line numbers stay true."""
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def referenced_modules(text, modules):
    found = set()
    for m in re.finditer(r"crate::\{([^}]*)\}", text):
        for part in m.group(1).split(","):
            name = part.strip().split("::")[0].strip()
            if name in modules:
                found.add(name)
    for m in re.finditer(r"crate::(\w+)", text):
        if m.group(1) in modules:
            found.add(m.group(1))
    return found


def module_cycles(crate):
    src = os.path.join(CRATES, crate, "src")
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.join(d, n) for n in names if n.endswith(".rs")]
    modules = {top_module(src, f) for f in files} - {"lib", "main"}
    edges = {m: set() for m in modules}
    where = {}
    for f in files:
        mod = top_module(src, f)
        if mod in ("lib", "main"):
            continue
        # Test modules may reach anywhere.
        text = strip_comments(open(f, encoding="utf-8").read()).split("#[cfg(test)]")[0]
        for other in referenced_modules(text, modules) - {mod} - NOT_MODULES:
            edges[mod].add(other)
            where.setdefault((mod, other), os.path.relpath(f, ROOT))
    found = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if a < b and a in edges.get(b, ()):
                found.append(f"{crate}: module cycle {a} <-> {b} ({where[(a, b)]}, {where[(b, a)]})")
    return found


def store_reads(root=ROOT):
    found = []
    for crate in ("web", "server"):
        src = os.path.join(root, "crates", crate, "src")
        for d, _, names in os.walk(src):
            for n in names:
                if not n.endswith(".rs"):
                    continue
                path = os.path.join(d, n)
                text = strip_comments(open(path, encoding="utf-8").read())
                for i, line in enumerate(text.split("\n"), 1):
                    if "musubi_store" in line or ".store()" in line:
                        found.append(f"{os.path.relpath(path, root)}:{i}: reads the store around the service: {line.strip()}")
    return found


def self_test():
    """A page that reads the store (after a comment of several lines) is reported at its line;
    a mention in a comment is not."""
    with tempfile.TemporaryDirectory() as root:
        src = os.path.join(root, "crates", "web", "src")
        os.makedirs(src)
        with open(os.path.join(src, "page.rs"), "w", encoding="utf-8") as f:
            f.write("/* a comment\n   over lines */\n// svc.store() in a comment\n"
                    "let u = svc.store().read(|r| r.users())?;\n")
        found = store_reads(root)
    want = os.path.join("crates", "web", "src", "page.rs") + ":4: "
    if len(found) != 1 or not found[0].startswith(want):
        print(f"tidy self-test: expected one finding at {want!r}, got {found!r}")
        return False
    return True


def main():
    if "--self-test" in sys.argv and not self_test():
        return 1
    problems = []
    for crate in sorted(os.listdir(CRATES)):
        if os.path.isdir(os.path.join(CRATES, crate, "src")):
            problems += module_cycles(crate)
    if "--cycles-only" not in sys.argv:
        problems += store_reads()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
