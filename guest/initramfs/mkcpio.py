#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write a newc cpio archive (the initramfs format) from a spec, reproducibly.

The spec is the kernel's gen_init_cpio format, one entry a line:
    dir   <name> <mode>
    file  <name> <source> <mode>
    slink <name> <target> <mode>
    nod   <name> <mode> c|b <major> <minor>
Every entry is owned by root with mtime 0 and inode numbers given in spec
order, so the same inputs give the same bytes, and device nodes such as
/dev/console are written without needing root or mknod.
"""
import sys

def header(ino, mode, nlink, size, rmaj, rmin, name):
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, len(name) + 1, 0]
    h = b"070701" + b"".join(b"%08X" % f for f in fields)
    h += name.encode() + b"\0"
    return h + b"\0" * (-len(h) % 4)

def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkcpio.py SPEC OUT")
    out = bytearray()
    ino = 1
    for lineno, line in enumerate(open(sys.argv[1]), 1):
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        kind, name = w[0], w[1].lstrip("/")
        try:
            if kind == "dir":
                out += header(ino, 0o040000 | int(w[2], 8), 2, 0, 0, 0, name)
            elif kind == "file":
                data = open(w[2], "rb").read()
                out += header(ino, 0o100000 | int(w[3], 8), 1, len(data), 0, 0, name)
                out += data + b"\0" * (-len(data) % 4)
            elif kind == "slink":
                t = w[2].encode()
                out += header(ino, 0o120000 | int(w[3], 8), 1, len(t), 0, 0, name)
                out += t + b"\0" * (-len(t) % 4)
            elif kind == "nod":
                typ = 0o020000 if w[3] == "c" else 0o060000
                out += header(ino, typ | int(w[2], 8), 1, 0, int(w[4]), int(w[5]), name)
            else:
                sys.exit(f"{sys.argv[1]}:{lineno}: unknown entry '{kind}'")
        except (IndexError, ValueError, OSError) as e:
            sys.exit(f"{sys.argv[1]}:{lineno}: {e}")
        ino += 1
    out += header(0, 0, 1, 0, 0, 0, "TRAILER!!!")
    out += b"\0" * (-len(out) % 512)
    with open(sys.argv[2] + ".tmp", "wb") as f:
        f.write(out)
    import os
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])

main()
