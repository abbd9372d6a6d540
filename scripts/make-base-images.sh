#!/usr/bin/env bash
# Makes the Debian 12 base images of the Dockerfile in podman's store, if missing: nothing can be
# pulled here (no registry), so they are built from Debian's packages with debootstrap.
#   docker.io/library/debian:12       minbase bookworm (the build stage)
#   docker.io/library/debian:12-slim  the same without documentation, manual pages, locales and
#                                     apt's caches (the runtime stage)
set -euo pipefail
podman=(podman --runtime runc)
if "${podman[@]}" image exists docker.io/library/debian:12 &&
  "${podman[@]}" image exists docker.io/library/debian:12-slim; then
  exit 0
fi
started=$(date +%s)
rootfs=$(mktemp -d /tmp/hospital-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"
tar -C "$rootfs" -c . | "${podman[@]}" import - docker.io/library/debian:12 >/dev/null
tar -C "$rootfs" -c --exclude=./usr/share/doc --exclude=./usr/share/man \
  --exclude=./usr/share/locale --exclude='./var/cache/apt/*' --exclude='./var/lib/apt/lists/*' . |
  "${podman[@]}" import - docker.io/library/debian:12-slim >/dev/null
echo "base images made in $(($(date +%s) - started)) s"
