#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build thaw's microVM guest kernel from Debian's linux-source-6.1, once per
# machine: tinyconfig + guest/kernel/microvm.config, everything built in.
#
#   guest/kernel/build.sh            build if needed; print the bzImage path
#   guest/kernel/build.sh --path     print the path it would have; exit 1 if not built
#
# The result lives outside any build tree, in
#   ${THAW_CACHE:-${XDG_CACHE_HOME:-~/.cache}/thaw}/kernel/<key>/{bzImage,vmlinux,config}
# where <key> hashes the fragment, the source package version, this script's
# recipe version and the compiler, so a change to any of them builds anew and
# an unchanged tree never rebuilds.  Progress goes to stderr while it builds;
# the last line on stdout is the bzImage path.  THAW_GUEST_KERNEL=/path/to/bzImage
# (or a vmlinux) skips all of this and uses that kernel.
set -euo pipefail

RECIPE=1 # bump when this script's output changes for the same inputs
here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/microvm.config"
tarball=${THAW_LINUX_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
cache=${THAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thaw}

say() { printf 'kernel: %s\n' "$*" >&2; }

if [ -n "${THAW_GUEST_KERNEL:-}" ]; then
    [ -r "$THAW_GUEST_KERNEL" ] || { say "THAW_GUEST_KERNEL=$THAW_GUEST_KERNEL is not readable"; exit 1; }
    echo "$THAW_GUEST_KERNEL"
    exit 0
fi

if [ ! -r "$tarball" ]; then
    say "$tarball is missing: apt-get install linux-source-6.1 (tools/packages.txt lists it)"
    exit 1
fi
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s-%Y "$tarball")
key=$( { echo "recipe=$RECIPE src=$srcver"; gcc --version | head -1; cat "$fragment"; } |
    sha256sum | cut -c1-16)
out="$cache/kernel/$key"

if [ "${1:-}" = "--path" ]; then
    [ -f "$out/bzImage" ] && { echo "$out/bzImage"; exit 0; }
    exit 1
fi

mkdir -p "$cache/kernel"
# One builder at a time per machine: a second caller waits, then finds it built.
exec 9>"$cache/kernel/.lock"
if ! flock -n 9; then
    say "another build is running; waiting for it"
    flock 9
fi
if [ -f "$out/bzImage" ]; then
    echo "$out/bzImage"
    exit 0
fi

start=$(date +%s)
src="$cache/src/linux-source-6.1-$srcver"
if [ ! -f "$src/.thaw-unpacked" ]; then
    say "unpacking $tarball (once per source version)"
    rm -rf "$src" && mkdir -p "$src"
    tar -xJf "$tarball" -C "$src" --strip-components=1
    touch "$src/.thaw-unpacked"
fi

obj="$out.build"
rm -rf "$obj" && mkdir -p "$obj"
jobs=${THAW_KERNEL_JOBS:-$(nproc)}
say "configuring (tinyconfig + $(basename "$fragment")) in $obj"
make -s -C "$src" O="$obj" tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >/dev/null
make -s -C "$src" O="$obj" olddefconfig >/dev/null

# Every line of the fragment must have survived: Kconfig silently drops an
# option whose dependencies are not met, which would give a kernel that boots
# without, say, virtio-console and a very confusing test failure.
bad=0
while IFS= read -r line; do
    case "$line" in CONFIG_*=*) ;; *) continue ;; esac
    opt=${line%%=*}
    want=${line#*=}
    have=$(grep -E "^$opt=" "$obj/.config" | head -1 | cut -d= -f2- || true)
    if [ "$have" != "$want" ]; then
        say "$opt: wanted $want, config has ${have:-unset}"
        bad=1
    fi
done <"$fragment"
[ $bad -eq 0 ] || { say "config fragment did not apply cleanly"; exit 1; }

# The previous build's step count, for a percentage.
steps_prev=$(cat "$cache/kernel/.steps" 2>/dev/null || echo 0)
say "building bzImage with $jobs jobs (a few minutes on 2 cores; progress every 15 s)"
log="$obj/build.log"
set +e
nice -n 10 make -C "$src" O="$obj" -j"$jobs" bzImage >"$log" 2>&1 &
mpid=$!
last=0
while kill -0 $mpid 2>/dev/null; do
    sleep 1
    now=$(date +%s)
    if [ $((now - last)) -ge 15 ]; then
        last=$now
        n=$(grep -c -E '^  [A-Z]' "$log" 2>/dev/null || true)
        pct=""
        [ "$steps_prev" -gt 0 ] && pct=" (~$((n * 100 / steps_prev))%)"
        say "$n steps$pct, $((now - start)) s"
    fi
done
wait $mpid
rc=$?
set -e
if [ $rc -ne 0 ]; then
    tail -30 "$log" >&2
    say "build failed (log: $log)"
    exit 1
fi
grep -c -E '^  [A-Z]' "$log" >"$cache/kernel/.steps" || true

mkdir -p "$out.tmp"
cp "$obj/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$obj/vmlinux" "$out.tmp/vmlinux"
cp "$obj/.config" "$out.tmp/config"
echo "$srcver" >"$out.tmp/source-version"
rm -rf "$out" && mv "$out.tmp" "$out"
rm -rf "$obj"
end=$(date +%s)
say "built in $((end - start)) s: $out/bzImage ($(stat -c %s "$out/bzImage") bytes)"
echo "$out/bzImage"
