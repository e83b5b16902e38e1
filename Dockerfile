# One image holding every Chronicle binary; compose picks the binary per service.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p command-api -p query-api -p projector -p chronicle \
    && mkdir -p /out \
    && cp target/release/command-api target/release/query-api target/release/projector \
          target/release/chronicle /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 chronicle
COPY --from=build /out/ /usr/local/bin/
USER chronicle
ENV LOG_FORMAT=json
CMD ["chronicle"]
