#!/usr/bin/env bash
# Installs the resilience library from BUILD_DIR into a temporary prefix, then configures, builds
# and runs a program outside the repository against it (test/install/consumer).
# Usage: check_install.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$(dirname "$0")/consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/resilience_consumer"
# Nothing from the services came along.
if find "$work/prefix" -path '*hospital*' -o -path '*server_kit*' | grep -q .; then
  echo "hospital code was installed with the library"
  exit 1
fi
echo "1 passed, 0 failed"
