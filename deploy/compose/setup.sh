#!/bin/sh
# Prepares deploy/compose/ for compose.yaml, with the images it names:
# - hazardwatch.toml: the example park (unless the file exists: then it is
#   kept), with the external broker, the service's user name and its
#   password file;
# - secrets/mqtt-password: the service's password at the broker (random);
# - secrets/broker/passwd and acl: the broker's password file (the service,
#   and each gateway of GATEWAYS, a TOML file of `GATEWAY = "password"`;
#   default: the example park's public demo passwords) and the ACL from
#   `hazardwatch gateway mosquitto-acl`.
# The secrets are owned by the images' user (65532) and readable by no one
# else.
#
#   sh deploy/compose/setup.sh
#   (CONTAINER_ENGINE, HAZARDWATCH_IMAGE, BROKER_IMAGE, GATEWAYS to change)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
engine=${CONTAINER_ENGINE:-podman}
hw=${HAZARDWATCH_IMAGE:-localhost/hazardwatch:latest}
broker=${BROKER_IMAGE:-localhost/hazardwatch-broker:latest}
gateways=${GATEWAYS:-$here/../config/demo-gateways.toml}
cd "$here"
mkdir -p secrets/broker
if [ ! -f hazardwatch.toml ]; then
  "$engine" run --rm "$hw" generate-config | sed '/^\[mqtt\]$/a\
broker = "127.0.0.1:1883"           # the compose stack'"'"'s broker (loopback: shared network)\
username = "hazardwatch"\
password_file = "/etc/hazardwatch/mqtt-password"' > hazardwatch.toml
fi
[ -s secrets/mqtt-password ] || head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > secrets/mqtt-password
"$engine" run --rm -v "$here/hazardwatch.toml:/etc/hazardwatch/hazardwatch.toml:ro" \
  -v "$here/secrets/mqtt-password:/etc/hazardwatch/mqtt-password:ro" \
  "$hw" gateway mosquitto-acl --config /etc/hazardwatch/hazardwatch.toml > secrets/broker/acl
# name password, one per line: the service, then the gateways.
{
  printf 'hazardwatch %s\n' "$(cat secrets/mqtt-password)"
  sed -n 's/^\([A-Za-z0-9_.-]*\) *= *"\(.*\)"$/\1 \2/p' "$gateways"
} > secrets/broker/users
: > secrets/broker/passwd
while read -r name password; do
  "$engine" run --rm --user 0 -v "$here/secrets/broker:/s" --entrypoint /usr/bin/mosquitto_passwd \
    "$broker" -b /s/passwd "$name" "$password"
done < secrets/broker/users
rm secrets/broker/users
chmod 700 secrets secrets/broker
chmod 600 secrets/mqtt-password secrets/broker/passwd secrets/broker/acl
if [ "$(id -u)" = 0 ]; then
  chown -R 65532:65532 secrets
else
  "$engine" unshare chown -R 65532:65532 secrets
fi
echo "ready: podman-compose -f $here/compose.yaml up -d"
