#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs, if any are missing.
#   scripts/install-deps.sh          everything: build, tests, benchmarks
#   scripts/install-deps.sh build    only what building the services needs (the image uses this)
#   scripts/install-deps.sh run      that, nats-server, openssl and postgresql-15
#                                    (scripts/run-local.sh)
#   scripts/install-deps.sh image    podman and debootstrap (scripts/image-test.sh)
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libfmt-dev libsqlite3-dev prometheus-cpp-dev libnats-dev zlib1g-dev libpq-dev
)
# Tests (Catch2, clang for ThreadSanitizer, clang-format, the manifest and rule checks) and
# benchmarks.
test_packages=(
  clang clang-format libclang-rt-14-dev catch2 libbenchmark-dev python3-jsonschema python3-yaml prometheus
  gnuplot-nox nats-server postgresql-15 openssl ccache podman runc debootstrap
)

packages=("${build_packages[@]}")
case "${1:-all}" in
  build) ;;
  run) packages+=(nats-server openssl postgresql-15) ;;
  image) packages=(podman runc debootstrap ccache python3-yaml) ;;
  *) packages+=("${test_packages[@]}") ;;
esac

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "Installing: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
    "${missing[@]}"
fi
