# simserve container image: a release build on Debian bookworm, run on distroless as a
# numeric non-root user. Build: docker build -t simserve .
# Run:   docker run --rm -p 8080:8080 simserve

ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS chef
# make builds jemalloc; the slim image has gcc and libc6-dev already.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin simserve
COPY . .
# The same command .ci/run runs, with no CPU-specific flags: the image runs on any x86-64.
RUN cargo build --release --locked --bin simserve

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /app/target/release/simserve /usr/local/bin/simserve
USER 65532:65532
ENV SIMSERVE_ADDR=0.0.0.0:8080 \
    SIMSERVE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/simserve", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/simserve"]
