#!/bin/sh
# Fills files/base/ (the `local` source of base.bst) with a statically linked
# busybox and the applet symlinks the other elements use. Idempotent: run it
# before `weir build`; it installs Debian's busybox-static if no static
# busybox is found. The binary is not kept in the repository.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
base="$here/files/base"
busybox=${BUSYBOX:-/bin/busybox}

is_static() {
    [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1
}

if ! is_static "$busybox"; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "prepare.sh: installing busybox-static" >&2
        apt-get install -y busybox-static >&2
    fi
    is_static "$busybox" || { echo "prepare.sh: no statically linked busybox at $busybox" >&2; exit 1; }
fi

mkdir -p "$base/bin" "$base/etc" "$base/tmp"
if ! cmp -s "$busybox" "$base/bin/busybox"; then
    cp "$busybox" "$base/bin/busybox.new"
    chmod 755 "$base/bin/busybox.new"
    mv "$base/bin/busybox.new" "$base/bin/busybox"
fi
for applet in sh echo cat mkdir cp ls ln rm mv chmod wc sort find sed tr head tail printf test true false env grep basename dirname; do
    [ -L "$base/bin/$applet" ] || ln -s busybox "$base/bin/$applet"
done
printf 'busybox-example\n' > "$base/etc/hostname"
: > "$base/tmp/.keep"
echo "prepare.sh: $base is ready" >&2
