#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Print the end of each failed test's output from meson's testlog.json.

tools/test calls this when a run fails.  Each failure gets its own bounded
tail, so one long log cannot push another failure's cause off the screen
(a single `tail` over all of them once hid why a test failed in CI).
"""
import json
import sys

BAD = {"FAIL", "TIMEOUT", "ERROR", "UNEXPECTEDPASS"}
STDOUT_LINES, STDERR_LINES = 60, 40


def tail(text, n):
    lines = (text or "").rstrip("\n").split("\n")
    cut = len(lines) - n
    return (["[... %d lines above ...]" % cut] if cut > 0 else []) + lines[-n:]


def main(path):
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        print("failures: cannot read %s: %s" % (path, e.strerror))
        return
    with f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("result") not in BAD:
                continue
            print("==== %s: %s (exit %s, %.1f s)" % (r.get("name"), r.get("result"),
                  r.get("returncode"), r.get("duration") or 0.0))
            for name, n in (("stdout", STDOUT_LINES), ("stderr", STDERR_LINES)):
                if r.get(name):
                    print("---- %s" % name)
                    print("\n".join(tail(r[name], n)))


if __name__ == "__main__":
    main(sys.argv[1])
