#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end test of thawd with a client that is not thaw's code: Python's
standard library only (socket + json), speaking JSON-RPC 2.0 one object per
line.  Starts the built thawd ($THAWD) on a temporary store and socket with
the process tier, creates a template, runs `echo hello` through sandbox.run,
drives a sandbox through acquire/exec/put/get/release, checks a parse error
leaves the connection usable, then stops thawd with SIGTERM."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from thawd_wait import wait_listening  # noqa: E402


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.next_id = 1
        self.notes = []

    def send_line(self, raw):
        self.file.write(raw)
        self.file.flush()

    def read(self):
        line = self.file.readline()
        if not line:
            fail("thawd closed the connection")
        return json.loads(line)

    def call(self, method, params=None):
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            req["params"] = params
        self.send_line((json.dumps(req) + "\n").encode())
        while True:
            msg = self.read()
            if "id" not in msg:
                self.notes.append(msg)
                continue
            if msg["id"] != req["id"]:
                fail("reply for id %r, expected %r" % (msg["id"], req["id"]))
            return msg

    def ok(self, method, params=None):
        msg = self.call(method, params)
        if "error" in msg:
            fail("%s: %s" % (method, msg["error"]))
        return msg["result"]


def main():
    thawd = os.environ.get("THAWD")
    if not thawd:
        print("SKIP: $THAWD is not set: run through meson test")
        return 77
    tmp = tempfile.mkdtemp(prefix="thaw-e2e-")
    sock = os.path.join(tmp, "thaw.sock")
    args = [thawd, "--socket", sock, "--store", os.path.join(tmp, "store"),
            "--enable-process-tier", "--no-default-templates"]
    if os.environ.get("THAW_AGENT"):
        args += ["--agent", os.environ["THAW_AGENT"]]
    log = open(os.path.join(tmp, "thawd.log"), "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        if not wait_listening(sock):
            fail("thawd does not listen on %s" % sock)
        c = Client(sock)
        info = c.ok("server.info")
        if info["name"] != "thawd":
            fail("server.info: %r" % info)
        c.ok("template.create", {"name": "py", "tier": "process", "min_ready": 1})
        out = c.ok("sandbox.run", {"template": "py", "argv": ["echo", "hello"]})
        if out["stdout"] != "hello\n" or out["exit_code"] != 0:
            fail("sandbox.run: %r" % out)
        print("sandbox.run echo hello ->", repr(out["stdout"]), "hit:", out["hit"])

        sb = c.ok("sandbox.acquire", {"template": "py"})["id"]
        c.ok("sandbox.put_file", {"id": sb, "path": os.path.join(tmp, "f.txt"),
                                  "data": "from python\n"})
        got = c.ok("sandbox.get_file", {"id": sb, "path": os.path.join(tmp, "f.txt")})
        if got["data"] != "from python\n":
            fail("get_file: %r" % got)
        res = c.ok("sandbox.exec", {"id": sb, "argv": ["sh", "-c", "read x; echo got $x"],
                                    "stdin": "42\n", "stream": True})
        if res["stdout"] != "got 42\n":
            fail("exec: %r" % res)
        if not any(n["method"] == "sandbox.output" for n in c.notes):
            fail("no sandbox.output notification with stream: true")
        c.ok("sandbox.release", {"id": sb})

        c.send_line(b"this is not json\n")
        err = c.read()
        if err.get("error", {}).get("code") != -32700:
            fail("expected -32700, got %r" % err)
        if c.call("no.such.method")["error"]["code"] != -32601:
            fail("expected -32601")
        c.ok("server.stats")
        print("protocol errors answered; connection still usable")

        # Regression: a client that half-closes after its request (what
        # `echo REQ | socat - UNIX-CONNECT:...` and `nc -U -N` do) lost the
        # reply: thawd closed on EOF with the request still in flight.
        h = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        h.connect(sock)
        h.sendall(b'{"jsonrpc":"2.0","id":7,"method":"sandbox.run",'
                  b'"params":{"template":"py","argv":["sh","-c","sleep 0.3; echo late"]}}\n')
        h.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = h.recv(65536)
            if not chunk:
                break
            data += chunk
        h.close()
        replies = [json.loads(x) for x in data.splitlines() if x.strip()]
        if len(replies) != 1 or replies[0].get("result", {}).get("stdout") != "late\n":
            fail("half-closed client: %r" % data)
        print("half-closed client answered, then closed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -1
        log.close()
        if rc != 0:
            print(open(os.path.join(tmp, "thawd.log")).read())
        shutil.rmtree(tmp, ignore_errors=True)
    if rc != 0:
        fail("thawd exited with %r after SIGTERM" % rc)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
