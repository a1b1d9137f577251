# syntax=docker/dockerfile:1
# Weir's container image: `docker build -t weir:dev .` from the repository root
# (deploy/README.md). Not built in CI: the CI machine has no container engine.

# --- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: cargo loads every member's manifest (host, tests, bench)
# even to build one package. .dockerignore keeps target/ and caches out.
COPY . .
# Cache mounts keep the registry and the build between image builds; the binary
# is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir --bin weir \
    && install -D -m 0755 target/release/weir /out/weir

# --- runtime ----------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir /usr/local/bin/weir
USER 65532:65532
EXPOSE 4680
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["serve", "--config", "/etc/weir/weir.toml"]
