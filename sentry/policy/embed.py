#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Turn a policy text file into a C source holding it as a string, so the
# policy stays data (reviewed as text) yet thawd needs no file at run time.
# usage: embed.py INPUT OUTPUT SYMBOL
import sys

src, dst, sym = sys.argv[1], sys.argv[2], sys.argv[3]
with open(src, encoding="utf-8") as f:
    text = f.read()
lines = ["// SPDX-License-Identifier: Apache-2.0",
         "// Generated from %s by embed.py: do not edit." % src.split("/")[-1],
         "const char %s[] =" % sym]
for line in text.splitlines(True):
    esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines.append('    "%s"' % esc)
lines.append('    "";')
lines.append("const char %s_name[] = \"%s\";" % (sym, src.split("/")[-1]))
with open(dst, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
