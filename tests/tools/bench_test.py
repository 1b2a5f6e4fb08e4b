#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""thaw tune and thaw bench end to end with tiny counts (slow suite), so
neither rots: a real thawd with its default (sentry) template and, where
/dev/kvm works, a vm template of the freestanding test guest (argv[1]).
tune: a ranked table with a best, progress, --json sorted by the goal,
--apply changes the template and it still serves, clear errors for bad
input.  bench: every scenario is a row of the table and of bench.json, no
thaw scenario failed, every peer is listed (measured or with its error),
ratios come from the same run, and the plots are written."""
import json
import os
import shutil
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
    if os.geteuid() != 0:
        print("SKIP: the default sentry template needs root")
        return 77
    guest = sys.argv[1] if len(sys.argv) > 1 else None
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK) and guest and os.path.exists(guest)
    tmp = tempfile.mkdtemp(prefix="thaw-bench-test-")
    os.chmod(tmp, 0o711)  # a sentry sandbox's unprivileged uid reaches its root below
    sock = os.path.join(tmp, "thaw.sock")
    args = [thawd, "--socket", sock, "--store", os.path.join(tmp, "store")]
    if os.environ.get("THAW_AGENT"):
        args += ["--agent", os.environ["THAW_AGENT"]]
    log = open(os.path.join(tmp, "thawd.log"), "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    env = dict(os.environ, THAW_SOCKET=sock)

    def cli(*argv, timeout=120):
        r = subprocess.run([thaw, *argv], env=env, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    try:
        if not wait_listening(sock):
            print("FAIL: thawd does not listen on %s" % sock)
            return 1
        rc, out, _ = cli("info")
        if "sentry" not in out or rc != 0:
            print("SKIP: thawd has no sentry tier here")
            return 77
        for _ in range(300):  # the default template is created at start
            rc, out, _ = cli("template", "ls")
            if "default" in out:
                break
            time.sleep(0.1)

        # ---- tune
        rc, out, err = cli("tune", "--help")
        check(rc == 0 and "usage" in out, "thaw tune --help")
        rc, _, err = cli("tune", "nosuch")
        check(rc == 4 and "not found" in err, "tune of a missing template exits 4")
        rc, _, err = cli("tune", "--goal", "speed", "default")
        check(rc == 2 and "--goal" in err, "tune --goal speed is a usage error")
        rc, _, err = cli("tune", "default")
        check(rc != 0 and "sentry template" in err, "tune of a sentry template says why not")
        if kvm:
            rc, out, err = cli("template", "create", "tg", "--tier", "vm", "--image", guest,
                               "--memory", "64", "--min-ready", "1")
            check(rc == 0, "vm template for tune: %s" % err)
            rc, _, err = cli("tune", "--chunk-kib", "96", "tg")
            check(rc == 2 and "power of two" in err, "tune --chunk-kib 96 is refused: %s" % err)
            rc, _, err = cli("tune", "--lz4", "13", "tg")
            check(rc == 2 and "lz4" in err, "tune --lz4 13 is refused: %s" % err)
            rc, _, err = cli("tune", "--engines", "fast", "tg")
            check(rc == 2 and "fast" in err, "tune --engines fast is refused: %s" % err)
            rc, out, err = cli("tune", "--iterations", "1", "--chunk-kib", "4,64", "--lz4", "0,3",
                               "tg", "--", "echo", "hi")
            check(rc == 0, "thaw tune runs: %s" % err)
            rows = [l for l in out.splitlines() if "KiB" in l]
            # 2 chunk sizes x 2 levels x (eager, lazy, lazy+prefetch, shared)
            check(len(rows) == 16, "tune tried 16 configurations, table has %d" % len(rows))
            check(sum(1 for l in rows if l.startswith("*")) == 1, "exactly one best is marked")
            check("16/16" in err and "recording the working set" in err, "tune shows progress")
            rc, out, err = cli("--json", "tune", "--iterations", "1", "--goal", "disk",
                               "--engines", "eager", "--chunk-kib", "4,2048", "tg", "--",
                               "echo", "hi")
            res = json.loads(out) if rc == 0 else {}
            ok = [r for r in res.get("results", []) if "error" not in r]
            check(len(ok) == 2, "tune --json results: %s" % (err or out[:300]))
            check(all(ok[i]["snapshot_bytes"] <= ok[i + 1]["snapshot_bytes"]
                      for i in range(len(ok) - 1)), "--goal disk sorts by snapshot size")
            check(ok and ok[0]["best"] and all(r["runs"] == 1 for r in ok), "best first, 1 run each")
            rc, out, err = cli("--json", "tune", "--iterations", "1", "--goal", "memory",
                               "--engines", "lazy,shared", "--chunk-kib", "4", "--apply", "tg",
                               "--", "echo", "hi")
            res = json.loads(out) if rc == 0 else {}
            check(res.get("applied") is True, "tune --apply applied: %s" % err)
            best = (res.get("results") or [{}])[0]
            rc, out, _ = cli("--json", "template", "show", "tg")
            tpl = json.loads(out) if rc == 0 else {}
            check(tpl.get("engine") == best.get("engine") and
                  tpl.get("prefetch") == best.get("prefetch"),
                  "the template took the best configuration")
            rc, out, err = cli("run", "-t", "tg", "--", "echo", "after-apply")
            check(rc == 0 and out == "after-apply\n", "the tuned template serves: %s" % err)
            store = os.path.join(tmp, "store", "templates", "tg")
            check(not [d for d in os.listdir(store) if d.startswith("tune.")],
                  "tune's variants were removed")
        else:
            print("note: no usable /dev/kvm or test guest: tune measured only its errors")

        # ---- bench
        out_dir = os.path.join(tmp, "bench")
        bargs = ["bench", "--count", "3", "--spike", "6", "--density", "2", "--time", "5",
                 "--peers", "--out", out_dir]
        if kvm:
            bargs += ["--vm-image", guest]
        rc, out, err = cli(*bargs, timeout=600)
        check(rc == 0, "thaw bench exits 0: %s" % err[-500:])
        for scen in ["hit", "miss", "spike", "template", "density", "peers"]:
            check(any(l.startswith(scen + " ") for l in out.splitlines()),
                  "table has a %s row" % scen)
        try:
            doc = json.load(open(os.path.join(out_dir, "bench.json")))
        except (OSError, ValueError) as e:
            doc = {}
            check(False, "bench.json: %s" % e)
        rows = doc.get("rows", [])
        check(doc.get("machine", {}).get("cpus", 0) >= 1, "bench.json names the machine")
        for r in rows:
            if r["scenario"] != "peers":
                check(not r["failed"], "thaw scenario %s/%s ran: %s" %
                      (r["scenario"], r["case"], r.get("note")))
        hits = [r for r in rows if r["scenario"] == "hit"]
        check([r["case"] for r in hits] == ["1 client", "8 clients", "64 clients"],
              "hit with 1, 8 and 64 clients")
        check(all(r["n"] >= 1 and r["n"] <= 3 for r in hits), "hit is bounded by --count")
        miss = [r for r in rows if r["scenario"] == "miss"]
        check(len(miss) == 4, "miss: default + three vm engines listed")
        peers = {r["case"]: r for r in rows if r["scenario"] == "peers"}
        for p in ["thaw run", "bwrap", "crun", "runsc", "qemu"]:
            check(p in peers, "peer %s is listed" % p)
            if p in peers and peers[p]["failed"]:
                check(bool(peers[p].get("note")), "failed peer %s says why" % p)
        measured = [p for p, r in peers.items() if p != "thaw run" and not r["failed"]]
        check(len(doc.get("ratios", [])) >= len(measured),
              "a ratio for each measured peer")
        if shutil.which("gnuplot"):
            for f in ["bench-hit-cdf.svg", "bench-hit-cdf.png", "bench-hit-bars.svg",
                      "bench-hit-bars.png", "bench-density-bars.svg"]:
                p = os.path.join(out_dir, f)
                check(os.path.exists(p) and os.path.getsize(p) > 0, "plot %s written" % f)
        # The scenarios put the default template's policy back.
        rc, out, _ = cli("--json", "template", "show", "default")
        pol = json.loads(out).get("pool", {}) if rc == 0 else {}
        check(pol.get("min_ready") == 2, "default template's min_ready restored")
        rc, out, _ = cli("--json", "template", "ls")
        names = [t["name"] for t in json.loads(out).get("templates", [])] if rc == 0 else []
        check(not [n for n in names if n.startswith("bench-")], "bench's templates removed")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if failures:
            print("thawd log:", open(os.path.join(tmp, "thawd.log"), errors="replace").read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
