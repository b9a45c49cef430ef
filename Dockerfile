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

# OpenBLAS for the matrix products: simserve opens libopenblas.so.0 at start (SIMSERVE_BLAS
# auto) and multiplies with faer when it is missing, or where the processor has AVX-512 that
# this OpenBLAS's kernels do not use (the start-up log says). Debian's pthread build and the Fortran
# runtime it links, copied as real files under the names the loader looks up.
FROM ${RUST_IMAGE} AS openblas
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopenblas0-pthread=0.3.21+ds-4 \
    && rm -rf /var/lib/apt/lists/*

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=openblas /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so \
    /usr/lib/x86_64-linux-gnu/libopenblas.so.0
COPY --from=openblas /usr/lib/x86_64-linux-gnu/libgfortran.so.5.0.0 \
    /usr/lib/x86_64-linux-gnu/libgfortran.so.5
COPY --from=openblas /usr/lib/x86_64-linux-gnu/libquadmath.so.0.0.0 \
    /usr/lib/x86_64-linux-gnu/libquadmath.so.0
COPY --from=openblas /usr/share/doc/libopenblas0-pthread/copyright \
    /usr/share/doc/libopenblas0-pthread/copyright
COPY --from=openblas /usr/share/doc/libgfortran5/copyright /usr/share/doc/libgfortran5/copyright
COPY --from=openblas /usr/share/doc/libquadmath0/copyright /usr/share/doc/libquadmath0/copyright
COPY --from=builder /app/target/release/simserve /usr/local/bin/simserve
USER 65532:65532
# OPENBLAS_NUM_THREADS: OpenBLAS starts no pool of its own at load (simserve runs it one
# thread per call on its compute threads).
ENV SIMSERVE_ADDR=0.0.0.0:8080 \
    SIMSERVE_LOG_FORMAT=json \
    OPENBLAS_NUM_THREADS=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/simserve", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/simserve"]
