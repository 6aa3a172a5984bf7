# syntax=docker/dockerfile:1

# Kiln: one image holding the three binaries. Pick one with the command:
#   docker run kiln kiln-api | kiln-worker | kiln-scheduler
# Needs BuildKit (cache mounts): the default for `docker build` since Docker 23, and for
# `docker-compose build` 1.29 / `docker compose build`.

############################################################################################
# Build
############################################################################################
FROM rust:1-bookworm AS builder

WORKDIR /src

# sqlx checks queries against the committed .sqlx/ data instead of a live database.
# aws-lc-sys (pulled in by object_store's S3 client) builds its vendored AWS-LC with cc; never
# let it probe the image's OpenSSL headers. libwebp-sys builds libwebp from source with cc too,
# so gcc and make from the base image cover those. libjpeg-turbo (turbojpeg-sys) is built from
# its bundled source with cmake, and nasm for its SIMD code, then linked statically; so are
# libavif and libaom (AVIF output), so the runtime image needs no codec library.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake nasm \
 && rm -rf /var/lib/apt/lists/*
ENV SQLX_OFFLINE=true \
    AWS_LC_SYS_USE_SYSTEM=0 \
    CARGO_TERM_COLOR=never

# Only what the build reads (the whole workspace must be present for cargo to load it, tests/
# included); copying explicitly keeps target/ and local files out of the build.
COPY Cargo.toml Cargo.lock ./
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY scheduler ./scheduler
COPY tests ./tests

# The registry, git checkouts and target/ are cache mounts, so a rebuild after a source change
# recompiles only Kiln's own crates. target/ is not part of the layer: the binaries are copied out
# to /out in the same step.
RUN --mount=type=cache,id=kiln-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=kiln-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=kiln-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p kiln-api -p kiln-worker -p kiln-scheduler \
 && install -D -m 0755 -t /out \
        target/release/kiln-api \
        target/release/kiln-worker \
        target/release/kiln-scheduler

############################################################################################
# Runtime
############################################################################################
FROM debian:bookworm-slim AS runtime

# ca-certificates: system TLS roots, for any client (S3, SMTP, AMQP) that verifies against them.
# postgresql-client: pg_dump for the worker's backup jobs.
# curl: container health checks (GET /healthz).
# ffmpeg: ffprobe checks video uploads (API), ffmpeg transcodes them (worker); run as child
# processes, never linked.
# bookworm's postgresql-client is version 15 and pg_dump refuses to dump a newer server, which
# is why docker-compose.yml runs postgres:15.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client curl ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user; /var/lib/kiln is local media storage (a named volume mounted there starts
# with this ownership).
RUN groupadd --system --gid 10001 kiln \
 && useradd --system --uid 10001 --gid kiln --home-dir /var/lib/kiln --no-create-home \
        --shell /usr/sbin/nologin kiln \
 && install -d -o kiln -g kiln -m 0750 /var/lib/kiln

COPY --from=builder /out/ /usr/local/bin/

# In-container defaults: listen on all interfaces, store media in the volume. Metrics addresses
# differ per binary (api 9090, worker 9091, scheduler 9092) and default to loopback; set
# KILN_METRICS_ADDR=0.0.0.0:PORT to scrape them from outside the container.
ENV KILN_API_ADDR=0.0.0.0:8080 \
    KILN_STORAGE_URL=/var/lib/kiln

WORKDIR /var/lib/kiln
USER 10001:10001

# 8080: public API. 9090: API metrics (never to be published through the reverse proxy).
EXPOSE 8080 9090

# No HEALTHCHECK here: the same image runs the worker and scheduler, which serve no /healthz.
# docker-compose.yml gives the api service its own health check.
CMD ["kiln-api"]
