# Conveyor: a static binary on a minimal image, running as a non-root user,
# with the workspace as a volume.
#   docker build -t conveyor .
#   docker run --user "$(id -u):$(id -g)" -v "$PWD/examples/distribution:/workspace" -p 8080:8080 -p 8081:8081 conveyor
# The process writes to the workspace (the store under data/, flow files saved
# through the API): --user makes it the owner of the mounted folder.
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
