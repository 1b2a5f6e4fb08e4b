# SPDX-License-Identifier: Apache-2.0
# Shared by tools/up and tools/test: install missing Debian packages, then
# configure and build the tree.  Idempotent and quiet when nothing changed.
# Sourced, not run: expects THAW_ROOT to be set.

say() { printf '==> %s\n' "$*" >&2; }

thaw_packages() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$THAW_ROOT/tools/packages.txt" | awk '{print $1}'
}

thaw_install_missing() {
    local missing=() p
    for p in $(thaw_packages); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing packages: ${missing[*]}"
        say "run as root (or: sudo apt-get install ${missing[*]})"
        return 1
    fi
    say "installing ${#missing[@]} packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # apt-get update only when a package is not known to apt at all (fresh machine)
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/thaw-apt.log 2>&1; then
        say "apt-get update"
        apt-get update -q >>/tmp/thaw-apt.log 2>&1
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/thaw-apt.log 2>&1 || {
            tail -20 /tmp/thaw-apt.log >&2
            say "package installation failed (log: /tmp/thaw-apt.log)"
            return 1
        }
    fi
}

# thaw_build DIR [meson options...]: configure DIR once, then build it
# (only the ninja targets in $THAW_TARGETS when that is set).
thaw_build() {
    local dir=$1
    shift
    if [ ! -f "$THAW_ROOT/$dir/build.ninja" ]; then
        say "configuring $dir"
        meson setup "$THAW_ROOT/$dir" "$THAW_ROOT" "$@" >/tmp/thaw-meson-setup.log 2>&1 || {
            cat /tmp/thaw-meson-setup.log >&2
            return 1
        }
    elif [ $# -gt 0 ]; then
        meson configure "$THAW_ROOT/$dir" "$@" >/dev/null
    fi
    say "building $dir"
    local log="$THAW_ROOT/$dir/meson-logs/ninja.out"
    # shellcheck disable=SC2086 # THAW_TARGETS is a list
    if ! ninja -C "$THAW_ROOT/$dir" ${THAW_TARGETS:-} >"$log" 2>&1; then
        grep -v -E '^\[[0-9]+/[0-9]+\] ' "$log" | tail -60 >&2
        say "build of $dir failed (full log: $log)"
        return 1
    fi
}
