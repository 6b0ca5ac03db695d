#!/usr/bin/env python3
"""Parse-only rate of the Python `hl7` library (python-hl7) over the same SS-MIX2 files as the
Rust benchmark (benches/collect.rs writes their list with MUSUBI_BENCH_LIST=FILE).

    python3 -m venv /work/venv-collect && /work/venv-collect/bin/pip install hl7
    /work/venv-collect/bin/python crates/collect/benches/hl7_parse.py FILE_LIST

Prints one JSON object: messages/s for decoding (ISO-2022-JP) + parsing, and for parsing
already-decoded text, best of three rounds. python-hl7 builds the whole tree (segments,
fields, repetitions, components, subcomponents) when it parses.
"""
import json
import sys
import time

import hl7


def best(f, rounds=3):
    t = min(timed(f) for _ in range(rounds))
    return t


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main():
    paths = [l.strip() for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
    raw = [open(p, "rb").read() for p in paths]
    texts = [b.decode("iso2022_jp", errors="replace") for b in raw]
    failed = 0

    def decode_and_parse():
        nonlocal failed
        failed = 0
        for b in raw:
            try:
                hl7.parse(b.decode("iso2022_jp", errors="replace"))
            except Exception:
                failed += 1

    def parse_only():
        for t in texts:
            try:
                hl7.parse(t)
            except Exception:
                pass

    t1 = best(decode_and_parse)
    t2 = best(parse_only)
    print(json.dumps({
        "library": "hl7 (python-hl7) " + getattr(hl7, "__version__", "?"),
        "python": sys.version.split()[0],
        "files": len(raw),
        "failed": failed,
        "decode_parse_msgs_per_s": len(raw) / t1,
        "parse_only_msgs_per_s": len(raw) / t2,
    }, indent=2))


if __name__ == "__main__":
    main()
