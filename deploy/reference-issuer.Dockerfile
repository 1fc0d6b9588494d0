# Build: docker build -f deploy/reference-issuer.Dockerfile -t reference-issuer .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/reference-issuer ./cmd/reference-issuer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/reference-issuer /reference-issuer
USER nonroot:nonroot
EXPOSE 8090
ENTRYPOINT ["/reference-issuer"]
CMD ["run"]
