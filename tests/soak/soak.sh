#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The long soak (issue 10): thawd from BUILD under load for SECONDS.
#   tests/soak/soak.sh [BUILD] [SECONDS]     defaults: build 600
# Uses BUILD's thawd, agent and (with /dev/kvm) the vm test guest; run as
# root for the sentry tier.  In a sanitizer tree (build-asan) thawd runs
# under ASan/UBSan and any report fails the run.  Prints the request count
# and the before/after figures; exits non-zero if anything leaked or failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
secs=${2:-600}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
ninja -C "$build" tests/soak/test-soak rpc/thawd guest/thaw-agent >/dev/null
guest_img=()
[ -f "$build/tests/pool/thaw-agent-test-guest.elf" ] && guest_img=("$build/tests/pool/thaw-agent-test-guest.elf")
export THAWD="$build/rpc/thawd" THAW_AGENT="$build/guest/thaw-agent"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
exec "$build/tests/soak/test-soak" "$secs" "${guest_img[@]}"
