#!/usr/bin/env bash
# Installs the resilience library from BUILD_DIR into a temporary prefix and uses it as an
# adopting team would: the example of src/resilience/README.md built outside the repository with
# find_package(resilience 1.0 REQUIRED) and with pkg-config, each run against a closed port under
# test/install/example/policy.json. Also: the package's layout, its version check, and that none
# of the build's own option targets or hospital code came along.
# Usage: check_install.sh BUILD_DIR
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAILED: $*"
  failures=$((failures + 1))
}

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name resilienceConfig.cmake -printf '%h\n' | sed 's|/cmake/resilience$||')

# Layout: headers under the library's own prefix only, and the package's files.
[ -d "$prefix/include/resilience/resilience" ] && [ -d "$prefix/include/resilience/base" ] ||
  fail "headers are not under include/resilience/"
for generic in "$prefix/include/base" "$prefix/include/resilience/v1"; do
  [ ! -e "$generic" ] || fail "a generic include folder was installed: ${generic#"$prefix"/}"
done
for file in cmake/resilience/resilienceConfigVersion.cmake pkgconfig/resilience.pc; do
  [ -f "$libdir/$file" ] || fail "missing $file"
done
for doc in LICENSE README.md CHANGELOG.md; do
  [ -f "$prefix/share/doc/resilience/$doc" ] || fail "missing share/doc/resilience/$doc"
done
if grep -q 'hospital_' "$libdir"/cmake/resilience/resilienceTargets*.cmake; then
  fail "the exported targets name the build's own targets: $(grep -o 'hospital_[a-z_]*' \
    "$libdir"/cmake/resilience/resilienceTargets*.cmake | sort -u | tr '\n' ' ')"
fi
if grep -q -- '-fsanitize\|-Werror' "$libdir"/cmake/resilience/resilienceTargets*.cmake \
  "$libdir/pkgconfig/resilience.pc"; then
  fail "build options reach the library's users"
fi
if find "$prefix" -path '*hospital*' -o -path '*server_kit*' -o -path '*patients*' | grep -q .; then
  fail "hospital code was installed with the library"
fi

# The README's example, as it stands there.
awk '/^```cpp$/ {inside = 1; next} /^```$/ {inside = 0} inside' \
  "$repo/src/resilience/README.md" >"$work/example.cc"
[ -s "$work/example.cc" ] || fail "no C++ example in src/resilience/README.md"

# Runs an example binary against a closed port: UNAVAILABLE after the policy's three attempts.
check_run() {
  local how=$1 binary=$2 output
  set +e
  output=$("$binary" 127.0.0.1:1 "$here/example/policy.json" 2>&1)
  local code=$?
  set -e
  [ "$code" = 1 ] || fail "$how: exit $code, not 1 (the call must fail)"
  grep -q '^ListCircuitBreakers: UNAVAILABLE' <<<"$output" || fail "$how: no UNAVAILABLE in: $output"
  grep -Eq '^resilience_attempts_total\{.*\} 3$' <<<"$output" ||
    fail "$how: not 3 attempts in: $(grep attempts_total <<<"$output")"
}

cmake -S "$here/example" -B "$work/cmake-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DEXAMPLE_SOURCE="$work/example.cc" >"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log"; fail "find_package(resilience 1.0) failed"; }
cmake --build "$work/cmake-build" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "the example does not build with CMake"; }
[ -x "$work/cmake-build/resilience_example" ] && check_run cmake "$work/cmake-build/resilience_example"

# SameMajorVersion: a program that needs 2.0 is refused.
mkdir -p "$work/v2"
printf 'cmake_minimum_required(VERSION 3.25)\nproject(v2 LANGUAGES CXX)\nfind_package(resilience 2.0 REQUIRED)\n' \
  >"$work/v2/CMakeLists.txt"
if cmake -S "$work/v2" -B "$work/v2/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
  fail "find_package(resilience 2.0) accepted version 1"
fi

# pkg-config, as a Makefile would use it.
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion resilience)" = "$(sed -n 's/^Version: //p' "$libdir/pkgconfig/resilience.pc")" ] ||
  fail "pkg-config does not read resilience.pc"
# shellcheck disable=SC2046
g++ -std=c++17 -O1 "$work/example.cc" -o "$work/pkg-config-example" \
  $(pkg-config --cflags --libs resilience) 2>"$work/gcc.log" ||
  { cat "$work/gcc.log"; fail "the example does not build with pkg-config"; }
[ -x "$work/pkg-config-example" ] && check_run pkg-config "$work/pkg-config-example"

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "the installed package builds and runs the README's example with CMake and with pkg-config"
