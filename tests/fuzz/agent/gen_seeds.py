#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the seed corpus for fuzz_agentwire: one well-formed frame (or short
# stream) per message type, plus a few known-bad shapes.  Run from this
# directory; the output is committed, so this only reruns when the protocol
# changes.
import os, struct

MAGIC = 0x57414854
def field(tag, data):
    if isinstance(data, str): data = data.encode()
    return struct.pack("<HI", tag, len(data)) + data
def u32(tag, v): return field(tag, struct.pack("<I", v))
def u64(tag, v): return field(tag, struct.pack("<Q", v))
def frame(typ, rid, payload, flags=0):
    return struct.pack("<IHHII", MAGIC, typ, flags, rid, len(payload)) + payload

seeds = {
    "hello": frame(0x81, 0, u32(31, 1) + u64(32, 15) + field(33, "vm") + field(34, "Linux 6.1")
                   + field(35, "0f3c9a1e-1111-2222-3333-444455556666") + field(36, "0.1.0") + u64(37, 800000000)),
    "exec": frame(1, 7, field(1, "sh") + field(1, "-c") + field(1, "echo hi") + field(2, "A=b")
                  + field(3, "/tmp") + u32(4, 1000) + u32(5, 1000) + field(6, b"\x00\x01\xff")
                  + u32(7, 5000) + u64(8, 1 << 20) + u32(9, 1)),
    "exec_pty": frame(1, 8, field(1, "sh") + u32(9, 3) + u32(39, 40) + u32(40, 100)),
    "stdin": frame(2, 7, field(11, b"data") + u32(12, 1)),
    "signal": frame(3, 7, u32(13, 15) + u32(9, 1)),
    "put": frame(4, 8, field(14, "/tmp/x") + u32(15, 0o600) + u64(16, 0) + u32(9, 1) + field(11, b"hello")),
    "get": frame(5, 9, field(14, "/etc/passwd") + u64(16, 0) + u32(17, 65536)),
    "thaw": frame(6, 10, field(19, bytes(range(64))) + u64(20, 2000000000 * 10**9)),
    "quiesce_ping": frame(7, 11, b"") + frame(8, 12, field(11, b"12345678")),
    "started_out_exit": frame(0x82, 7, u32(10, 42)) + frame(0x83, 7, field(11, b"out"))
                        + frame(0x84, 7, field(11, b"err"))
                        + frame(0x85, 7, u32(21, 3) + u32(23, 0) + u32(24, 1) + u64(25, 10) + u64(26, 20) + u64(27, 3000) + u64(28, 5000)),
    "exit_signal": frame(0x85, 7, u32(22, 9) + u32(23, 1)),
    "error": frame(0x87, 8, u32(29, 2) + field(30, "put '/x': open: No such file or directory")),
    "data": frame(0x88, 9, field(11, b"abc") + u64(18, 3) + u32(12, 1)),
    "ok_applied": frame(0x86, 10, u32(38, 1)),
    "bad_field_overrun": frame(1, 1, struct.pack("<HI", 1, 1000) + b"ls"),
    "bad_magic": b"garbage-garbage-" + frame(8, 1, b""),
    "bad_len": struct.pack("<IHHII", MAGIC, 8, 0, 1, 0xffffffff),
    "bad_flags": frame(8, 1, b"", flags=1),
    "nul_in_argv": frame(1, 1, field(1, b"a\x00b")),
}
# for fuzz_agent_client: replies to request id 1, the client's first
seeds.update({
    "client_exec_ok": frame(0x82, 1, u32(10, 42)) + frame(0x83, 1, field(11, b"hi\n"))
                      + frame(0x85, 1, u32(21, 0) + u64(25, 1) + u64(27, 100)),
    "client_exec_flood": frame(0x82, 1, u32(10, 42)) + b"".join(frame(0x83, 1, field(11, b"x" * 3000)) for _ in range(4))
                         + frame(0x85, 1, u32(22, 9) + u32(24, 1)),
    "client_exec_error": frame(0x87, 1, u32(29, 2) + field(30, "exec 'x': exec: No such file or directory")),
    "client_rehello": frame(0x82, 1, u32(10, 42)) + frame(0x81, 0, u32(31, 1)),
    "client_other_id": frame(0x82, 2, u32(10, 1)) + frame(0x82, 1, u32(10, 42)) + frame(0x85, 1, u32(21, 1)),
})
os.makedirs("corpus", exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join("corpus", name), "wb") as f:
        f.write(data)
