# Build: docker build -f deploy/reference-issuer.Dockerfile -t reference-issuer .
# Run: the issuer listens on 127.0.0.1 unless ISSUER_HTTP_ADDR=:8090 (POST /login
# trusts any user id: publish the port only where that is fine, see README), and
# needs ISSUER_SIGNING_KEY_FILE (a mounted key) or ISSUER_DEV_EPHEMERAL_KEY=true.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Stamped like the Makefile's LDFLAGS: docker build --build-arg VERSION=… --build-arg COMMIT=… --build-arg BUILD_TIME=…
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_TIME=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/customdata-worker/customdata-worker/internal/buildinfo.version=${VERSION} -X github.com/customdata-worker/customdata-worker/internal/buildinfo.commit=${COMMIT} -X github.com/customdata-worker/customdata-worker/internal/buildinfo.buildTime=${BUILD_TIME}" -o /out/reference-issuer ./cmd/reference-issuer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/reference-issuer /reference-issuer
USER 65532:65532
EXPOSE 8090
# Healthy once /readyz answers 200 on ISSUER_HTTP_ADDR (loopback by default,
# which the probe reaches from inside the container): the binary probes
# itself (the image has no wget or curl) within its 3 s default timeout.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/reference-issuer", "healthcheck"]
ENTRYPOINT ["/reference-issuer"]
CMD ["run"]
