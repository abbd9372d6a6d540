# One image with the three service binaries, and Debian's nats-server for the asynchronous death
# workflow (k8s/components/async runs it from this image). Build it from the repository root:
#   docker build -t hospital:dev .
#   podman build --runtime runc --network host -t hospital:dev .   (scripts/image-test.sh)
# The build stage runs the same install script as the README and the services preset with
# warnings as errors (preset image).

FROM debian:12 AS build
WORKDIR /src
# Dependencies first, in a layer of their own: a change to the sources does not reinstall them.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh build \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ccache \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY . .
# The compiler cache: scripts/image-test.sh mounts the host's here (podman build -v), filled by
# the CI build of the same sources with the same flags; elsewhere it starts empty. Paths are made
# relative to the source tree and the working directory left out of the hash, so that a build
# in another checkout hits it.
ARG CCACHE_DIR=/ccache
# ccache also hashes the locale: scripts/test.sh builds with the same.
ENV CCACHE_DIR=${CCACHE_DIR} CCACHE_BASEDIR=/src CCACHE_NOHASHDIR=1 LANG=C.UTF-8
RUN cmake --preset image -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
      -DCMAKE_C_COMPILER_LAUNCHER=ccache \
 && cmake --build build -j2 --target patients morgue appointments \
 && install -D -s -m 0755 build/bin/patients /out/usr/local/bin/patients \
 && install -D -s -m 0755 build/bin/morgue /out/usr/local/bin/morgue \
 && install -D -s -m 0755 build/bin/appointments /out/usr/local/bin/appointments

FROM debian:12-slim
ARG VERSION=dev
ARG REVISION=unknown
# The licence is the repository's (LICENSE). The source label is the project's URL, which
# scripts/image-test.sh adds (podman build --label) when the checkout's origin is one; a local
# path is never a source.
LABEL org.opencontainers.image.title="hospital" \
      org.opencontainers.image.description="The patients, morgue and appointments gRPC services, and nats-server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:12-slim"
# Only the shared libraries the binaries load (found with ldd; dpkg -S names their packages;
# scripts/image-test.sh checks with ldd inside the image that none is missing).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgrpc++1.51 libprotobuf32 libabsl20220623 \
      libsqlite3-0 libpq5 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libnats3.4 \
      ca-certificates \
      nats-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 hospital \
 && useradd --system --uid 10001 --gid hospital --home-dir /data --no-create-home hospital \
 && mkdir -p /data && chown hospital:hospital /data
COPY --from=build /out/ /
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# gRPC, metrics, admin listeners (k8s/base binds them to the pod address), the health-only port
# of components/tls.
EXPOSE 50051 50052 50053 9091 9092 9093 50061 50062 50063 8081
