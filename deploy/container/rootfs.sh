#!/bin/sh
# Lays out what the container image holds, under OUT:
# - OUT/rootfs: its file system: the hazardwatch binary, the shared
#   libraries it loads (found with ldd, so the image has exactly what this
#   build links: glibc, libgcc_s, libm and the loader), /etc/hazardwatch
#   for the mounted configuration, /tmp;
# - OUT/data: the empty data directory, copied to /var/lib/hazardwatch
#   owned by the service's user.
# Used by the Containerfile's build stage (OUT=/out), and by the test on a
# machine with no registry (`--build-context build=DIR`, OUT=DIR/out).
#
#   sh deploy/container/rootfs.sh BINARY OUT
set -eu
bin=$1
root=$2/rootfs
[ -x "$bin" ] || { echo "rootfs.sh: $bin is not an executable" >&2; exit 2; }
mkdir -p "$2/data" "$root/usr/local/bin" "$root/etc/hazardwatch" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/hazardwatch"
sh "$(dirname "$0")/libs.sh" "$bin" "$root"
# Names for the numeric user the image runs as (logs and `ls` read better).
printf 'root:x:0:0:root:/:/sbin/nologin\nhazardwatch:x:65532:65532:hazardwatch:/var/lib/hazardwatch:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nhazardwatch:x:65532:\n' > "$root/etc/group"
