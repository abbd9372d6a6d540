#!/usr/bin/env bash
# Builds the container image (Dockerfile) with podman and checks it as the cluster would run it
# (test/image/check_image.py): contents, libraries, labels, then the services of the dev and
# dev-async overlays started from it with their manifests' arguments, probes, a death, SIGTERM and
# a restart. CI runs it after the gcc build (scripts/test.sh).
#
#   scripts/image-test.sh [BUILD_DIR]       both; BUILD_DIR holds health_probe and hospital_call
#   scripts/image-test.sh --build-only      the image only (CI builds it beside another build)
#   scripts/image-test.sh --check-only [BUILD_DIR]
#
# The base images cannot be pulled here (no registry): scripts/make-base-images.sh makes them
# once with debootstrap and keeps them in podman's store.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=all
case "${1:-}" in
  --build-only | --check-only)
    phase=${1#--}
    shift
    ;;
esac
build_dir=${1:-build}
image=${HOSPITAL_IMAGE:-localhost/hospital:test}

scripts/install-deps.sh image
# crun refuses this machine's hybrid cgroup layout; the limits are the most it may set.
podman=(podman --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

build_image() {
  scripts/make-base-images.sh
  # The host's compiler cache, which the CI build of the same sources filled (scripts/test.sh).
  local ccache_dir started
  ccache_dir=$(ccache -k cache_dir 2>/dev/null || echo "$HOME/.cache/ccache")
  mkdir -p "$ccache_dir"
  CCACHE_DIR=$ccache_dir ccache --zero-stats >/dev/null
  # The project's URL as the image's source, or no such label (never a local path).
  local origin source_label=()
  origin=$(git remote get-url origin 2>/dev/null || true)
  if [[ $origin =~ ^https:// ]]; then
    source_label=(--label "org.opencontainers.image.source=${origin%.git}")
  fi
  started=$(date +%s)
  "${podman[@]}" build --network host "${limits[@]}" -v "$ccache_dir:/ccache" \
    --build-arg VERSION="$(git describe --always --dirty 2>/dev/null || echo dev)" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    "${source_label[@]}" \
    -t "$image" . >/tmp/hospital-image-build.log 2>&1 || {
    tail -n 30 /tmp/hospital-image-build.log
    return 1
  }
  echo "image built in $(($(date +%s) - started)) s"
  CCACHE_DIR=$ccache_dir ccache --print-stats |
    grep -E "^(direct_cache_hit|preprocessed_cache_hit|cache_miss)\s" | tr '\n' ' ' |
    sed 's/^/compiler cache: /; s/$/\n/'
  "${podman[@]}" image inspect --format 'image size: {{.Size}} bytes' "$image"
}

if [[ "$phase" != check-only ]]; then build_image; fi
if [[ "$phase" == build-only ]]; then exit 0; fi

python3 test/image/check_image.py --image "$image" \
  --health_probe "$build_dir/bin/health_probe" \
  --hospital_call "$build_dir/bin/hospital_call"
