# Conveyor: a static binary on a minimal image, running as a non-root user,
# with the workspace as a volume.
#   docker build -t conveyor .
#   docker run -v "$PWD/examples/distribution:/workspace" -p 8080:8080 -p 8081:8081 conveyor
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/conveyor ./cmd/conveyor

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/conveyor /usr/local/bin/conveyor
VOLUME ["/workspace"]
WORKDIR /workspace
EXPOSE 8080 8081
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/conveyor"]
CMD ["serve", "--workspace", "/workspace", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:8081"]
