#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test three times over: the full suite (gcc,
# warnings as errors), then the container image built and run as the cluster would
# (scripts/image-test.sh); the full suite again built with clang's AddressSanitizer and
# UndefinedBehaviorSanitizer, then each fuzzer for 10 s; and the ThreadSanitizer suite (tests
# labelled "tsan").
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# The container image's base images, from Debian's packages, while the suite builds.
scripts/make-base-images.sh >/tmp/hospital-base-images.log 2>&1 &
base_images=$!

# Through the compiler cache, which the image's build then reads (same sources, same flags):
# paths relative to the source tree, the working directory left out of the hash, and the locale
# (which ccache hashes) the one the Dockerfile's build stage sets.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1 LANG=C.UTF-8
unset LC_ALL LC_CTYPE LC_MESSAGES
cmake --preset ci -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
cmake --build build -j2
ctest --test-dir build -j2 --output-on-failure

# The container image: built (mostly downloads, and compiler cache hits from the build above)
# beside the ASan build, then run as the cluster would before the ASan tests start (it listens on
# the services' fixed ports, which the manifest check of the suites uses too).
wait "$base_images" || {
  cat /tmp/hospital-base-images.log
  exit 1
}
scripts/image-test.sh --build-only >/tmp/hospital-image.log 2>&1 &
image_build=$!

# Every test, the services they start included, under ASan and UBSan; leaks fail them too.
cmake --preset asan
cmake --build build-asan -j2
wait "$image_build" || {
  cat /tmp/hospital-image.log
  exit 1
}
cat /tmp/hospital-image.log
scripts/image-test.sh --check-only build
# The manifest check starts the plain binaries (the gcc suite and the image test did); under ASan
# it would only repeat their start-up.
ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  ctest --test-dir build-asan -j2 --output-on-failure -E '^(resilience_install|k8s_manifests)$'
# Each fuzzer for 10 s from its seed corpus (scripts/fuzz.sh runs them longer).
scripts/fuzz.sh 10

cmake --preset tsan
cmake --build build-tsan -j2 --target tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L tsan -j2 --output-on-failure
