# Build: docker build -f deploy/bridge.Dockerfile -t customdata-bridge .
# Run: configured by CUSTOMDATA_BRIDGE_* variables (README "Identity servers"):
# hooks on :8091, /livez /readyz /metrics on :8092. It serves plain HTTP: put
# TLS in front of the hooks wherever they leave a private network.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Stamped like the Makefile's LDFLAGS: docker build --build-arg VERSION=… --build-arg COMMIT=… --build-arg BUILD_TIME=…
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_TIME=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/customdata-worker/customdata-worker/internal/buildinfo.version=${VERSION} -X github.com/customdata-worker/customdata-worker/internal/buildinfo.commit=${COMMIT} -X github.com/customdata-worker/customdata-worker/internal/buildinfo.buildTime=${BUILD_TIME}" -o /out/customdata-bridge ./cmd/customdata-bridge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/customdata-bridge /customdata-bridge
USER 65532:65532
EXPOSE 8091 8092
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/customdata-bridge", "healthcheck"]
ENTRYPOINT ["/customdata-bridge"]
CMD ["run"]
