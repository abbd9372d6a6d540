# One image with the three service binaries, and Debian's nats-server for the asynchronous death
# workflow (k8s/components/async runs it from this image). Build it from the repository root:
#   docker build -t hospital:dev .
# The build stage runs the same install script and CMake commands as the README.

FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset services \
 && cmake --build build -j2 --target patients morgue appointments \
 && install -D -m 0755 build/src/patients/patients /out/usr/local/bin/patients \
 && install -D -m 0755 build/src/morgue/morgue /out/usr/local/bin/morgue \
 && install -D -m 0755 build/src/appointments/appointments /out/usr/local/bin/appointments

FROM debian:12-slim
# Only the shared libraries the binaries load (found with ldd; dpkg -S names their packages).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgrpc++1.51 libprotobuf32 libabsl20220623 \
      libsqlite3-0 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libnats3.4 ca-certificates \
      nats-server \
 && rm -rf /var/lib/apt/lists/* \
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
