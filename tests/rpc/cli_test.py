#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The thaw CLI against a real thawd: every subcommand, --help on each,
tables by default and --json, and exit codes that mean something
(`thaw run -- echo hello` prints hello and exits with the command's status;
4 for not found, 2 for usage, 3 when thawd cannot be reached)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from thawd_wait import wait_listening  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def main():
    thawd, thaw = os.environ.get("THAWD"), os.environ.get("THAW")
    if not thawd or not thaw:
        print("SKIP: $THAWD/$THAW are not set: run through meson test")
        return 77
    tmp = tempfile.mkdtemp(prefix="thaw-cli-")
    sock = os.path.join(tmp, "thaw.sock")
    args = [thawd, "--socket", sock, "--store", os.path.join(tmp, "store"),
            "--enable-process-tier", "--no-default-templates"]
    if os.environ.get("THAW_AGENT"):
        args += ["--agent", os.environ["THAW_AGENT"]]
    log = open(os.path.join(tmp, "thawd.log"), "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    env = dict(os.environ, THAW_SOCKET=sock)

    def cli(*argv, stdin=None):
        r = subprocess.run([thaw, *argv], env=env, input=stdin, capture_output=True, timeout=60)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    try:
        if not wait_listening(sock):
            print("FAIL: thawd does not listen on %s" % sock)
            return 1
        # --help everywhere, exit 0, says "usage".
        for sub in [[], ["run"], ["template"], ["pool"], ["sandbox"], ["stats"], ["info"],
                    ["metrics"], ["sandbox", "exec"], ["template", "create"]]:
            rc, out, _ = cli(*sub, "--help")
            check(rc == 0 and "usage" in out, "thaw %s --help" % " ".join(sub))
        rc, _, err = cli("frobnicate")
        check(rc == 2 and "unknown command" in err, "unknown command exits 2")

        rc, out, err = cli("template", "create", "p", "--tier", "process", "--min-ready", "1")
        check(rc == 0 and "NAME" in out and "process" in out, "template create prints a table")
        check("ready" in err, "template create shows progress")
        rc, out, _ = cli("run", "-t", "p", "--", "echo", "hello")
        check(rc == 0 and out == "hello\n", "thaw run -- echo hello")
        rc, out, err = cli("run", "-t", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        check(rc == 3 and out == "out\n" and err == "err\n", "run: streams and exit status")
        rc, _, _ = cli("run", "-t", "p", "--", "sh", "-c", "kill -9 $$")
        check(rc == 137, "run: 128+signal")
        rc, _, _ = cli("run", "-t", "p", "--timeout", "100", "--", "sleep", "5")
        check(rc == 124, "run: 124 on timeout")
        rc, out, _ = cli("run", "-t", "p", "-i", "--", "cat", stdin=b"piped\n")
        check(rc == 0 and out == "piped\n", "run --stdin")
        rc, _, err = cli("run", "-t", "nosuch", "--", "true")
        check(rc == 125 and "not found" in err, "run: 125 when thaw cannot run it")
        rc, out, _ = cli("--json", "run", "-t", "p", "--", "echo", "j")
        check(rc == 0 and json.loads(out)["stdout"] == "j\n", "run --json")

        rc, sid, _ = cli("sandbox", "acquire", "-t", "p")
        sid = sid.strip()
        check(rc == 0 and sid.startswith("sb-"), "sandbox acquire prints an id")
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:
            f.write(bytes(range(256)))
        dst_in = os.path.join(tmp, "in-sandbox.bin")
        rc, _, _ = cli("sandbox", "put", sid, src, dst_in)
        check(rc == 0, "sandbox put")
        back = os.path.join(tmp, "back.bin")
        rc, _, _ = cli("sandbox", "get", sid, dst_in, back)
        check(rc == 0 and open(back, "rb").read() == bytes(range(256)), "sandbox get, binary")
        rc, out, _ = cli("sandbox", "exec", sid, "--", "echo", "inside")
        check(rc == 0 and out == "inside\n", "sandbox exec")
        rc, out, _ = cli("sandbox", "ls")
        check(rc == 0 and sid in out and "ID" in out, "sandbox ls table")
        rc, out, _ = cli("--json", "sandbox", "ls")
        check(rc == 0 and json.loads(out)["sandboxes"][0]["id"] == sid, "sandbox ls --json")
        rc, _, _ = cli("sandbox", "release", sid)
        check(rc == 0, "sandbox release")
        rc, _, err = cli("sandbox", "release", sid)
        check(rc == 4 and "not found" in err, "release twice: 4")

        rc, out, _ = cli("pool", "status")
        check(rc == 0 and "TEMPLATE" in out and "p" in out, "pool status")
        rc, out, _ = cli("pool", "set", "p", "--min-ready", "2")
        check(rc == 0 and "min_ready 2" in out, "pool set")
        rc, _, _ = cli("pool", "prewarm", "p", "3", "--wait", "10000")
        check(rc == 0, "pool prewarm --wait")
        rc, _, _ = cli("pool", "prewarm", "p", "999")
        check(rc == 2, "pool prewarm over max_ready: 2 (invalid params)")
        rc, out, _ = cli("template", "ls")
        check(rc == 0 and "MIN/MAX/TOTAL" in out, "template ls")
        rc, out, _ = cli("template", "show", "p")
        check(rc == 0 and "acquire_hit" in out, "template show")
        rc, out, _ = cli("--json", "template", "show", "p")
        check(rc == 0 and json.loads(out)["name"] == "p", "template show --json")
        rc, out, _ = cli("stats")
        check(rc == 0 and "LATENCY" in out and "run" in out and " busy, " in out, "stats")
        rc, out, _ = cli("--json", "stats")
        check(rc == 0 and "latency" in json.loads(out), "stats --json")
        rc, out, _ = cli("metrics")
        check(rc == 0 and "# TYPE thaw_pool_ready gauge" in out, "metrics")
        rc, out, _ = cli("info")
        check(rc == 0 and "TIER" in out and "process" in out, "info")
        rc, _, _ = cli("template", "rm", "p")
        check(rc == 0, "template rm")
        rc, _, _ = cli("template", "show", "p")
        check(rc == 4, "template show of a removed template: 4")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    rc, _, err = cli("info")
    check(rc == 3 and "cannot reach thawd" in err, "no thawd: exit 3")
    shutil.rmtree(tmp, ignore_errors=True)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
