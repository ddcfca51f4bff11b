#!/bin/sh
# Lays out the MQTT broker image's file system under OUT/rootfs from the
# mosquitto installed here (Debian's package): mosquitto and
# mosquitto_passwd, the libraries they load, /etc/mosquitto for the mounted
# configuration, and OUT/data, the empty persistence directory.
# Used by broker.Containerfile's build stage (OUT=/out), and by the test on
# a machine with no registry (`--build-context build=DIR`, OUT=DIR/out).
#
#   sh deploy/compose/broker-rootfs.sh OUT
set -eu
root=$1/rootfs
mkdir -p "$1/data" "$root/usr/sbin" "$root/usr/bin" "$root/etc/mosquitto" "$root/tmp"
chmod 1777 "$root/tmp"
for bin in /usr/sbin/mosquitto /usr/bin/mosquitto_passwd; do
  [ -x "$bin" ] || { echo "broker-rootfs.sh: $bin is missing (apt-get install mosquitto)" >&2; exit 2; }
  cp "$bin" "$root$bin"
  sh "$(dirname "$0")/../container/libs.sh" "$bin" "$root"
done
printf 'root:x:0:0:root:/:/sbin/nologin\nmosquitto:x:65532:65532:mosquitto:/var/lib/mosquitto:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nmosquitto:x:65532:\n' > "$root/etc/group"
