#!/bin/sh
# Copies the shared libraries BINARY loads (as ldd names them) into ROOT,
# each at the path the loader looks for it: an image FROM scratch then has
# exactly what this build links.
#
#   sh deploy/container/libs.sh BINARY ROOT
set -eu
ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
  mkdir -p "$2$(dirname "$lib")"
  cp -L "$lib" "$2$lib"
done
