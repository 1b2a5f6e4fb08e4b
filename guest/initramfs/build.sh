#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build thaw's microVM initramfs, reproducibly (same inputs, same bytes):
#   guest/initramfs/build.sh AGENT OUT [base|python]
# AGENT is a static thaw-agent (it becomes /init); busybox comes from Debian's
# busybox-static with a link per applet; the python flavour adds the host's
# python3, the shared libraries it loads and its standard library (large:
# for realistic benchmarks, not for the tests).  The archive is uncompressed:
# under TCG, and in a VMM that restores from snapshots anyway, unpacking is
# cheaper than decompressing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
agent=${1:?usage: build.sh AGENT OUT [base|python]}
out=${2:?usage: build.sh AGENT OUT [base|python]}
flavour=${3:-base}
busybox=${THAW_BUSYBOX:-/bin/busybox}

die() { echo "initramfs: $*" >&2; exit 1; }
[ -x "$agent" ] || die "$agent: not an executable"
file_type=$(head -c 4 "$agent" | od -An -c | tr -d ' ')
[ "$file_type" = "177ELF" ] || die "$agent: not an ELF binary"
if readelf -l "$agent" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$agent is dynamically linked: build it from a tree without sanitizers"
fi
[ -x "$busybox" ] || die "$busybox missing: apt-get install busybox-static"
if readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$busybox is dynamically linked: install busybox-static"
fi

spec=$(mktemp)
trap 'rm -f "$spec"' EXIT
{
    for d in /bin /sbin /usr /usr/bin /usr/sbin /etc /dev /proc /sys /tmp /run /root /lib \
        /lib64 /var /var/tmp /mnt; do
        echo "dir $d 0755"
    done
    echo "nod /dev/console 0600 c 5 1"
    echo "nod /dev/null 0666 c 1 3"
    echo "file /init $agent 0755"
    echo "file /bin/busybox $busybox 0755"
    "$busybox" --list-full | sort | while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        echo "slink /$applet /bin/busybox 0777"
    done
    echo "file /etc/passwd $here/passwd 0644"
    echo "file /etc/group $here/group 0644"
    case "$flavour" in base | python) ;; *) die "unknown flavour '$flavour' (base or python)" ;; esac
    if [ "$flavour" = python ]; then
        echo "dir /usr/lib 0755"
        # Debian's interpreter, not whatever python3 is first on PATH (a pyenv
        # shim is a shell script); THAW_PYTHON overrides
        py=$(readlink -f "${THAW_PYTHON:-/usr/bin/python3}")
        [ -x "$py" ] || die "${THAW_PYTHON:-/usr/bin/python3}: no python3 (apt-get install python3)"
        ldd "$py" >/dev/null 2>&1 || die "$py is not a dynamically linked ELF interpreter"
        ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        echo "file /usr/bin/python$ver $py 0755"
        echo "slink /usr/bin/python3 python$ver 0777"
        # the loader and every library python3 links, at the paths it expects
        ldd "$py" | awk '/=>/ {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
            [ -f "$lib" ] || continue
            d=$(dirname "$lib")
            echo "dir $d 0755"
            echo "file $lib $(readlink -f "$lib") 0755"
        done
        # the standard library without its tests; the interpreter compiles
        # nothing at run time because the host's __pycache__ comes along
        stdlib=/usr/lib/python$ver
        (cd / && find "${stdlib#/}" \( -name test -o -name tests -o -name idlelib \
            -o -name tkinter -o -name turtledemo -o -name ensurepip \) -prune -o -print | sort) |
            while read -r p; do
                if [ -d "/$p" ]; then echo "dir /$p 0755"
                elif [ -L "/$p" ]; then echo "slink /$p $(readlink "/$p") 0777"
                elif [ -f "/$p" ]; then echo "file /$p /$p 0644"
                fi
            done
    fi
} | awk '!seen[$0]++' >"$spec" || die "could not list the files for the $flavour flavour"
python3 "$here/mkcpio.py" "$spec" "$out"
echo "initramfs: $out ($flavour, $(stat -c %s "$out") bytes)" >&2
