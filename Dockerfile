# The image server (examples/server) as a static binary on distroless.
#
#   docker build -t sdxs-server .
#   docker run --rm -p 8080:8080 -v sdxs-cache:/cache sdxs-server -model IDKiro/sdxs-512-dreamshaper
#
# The model cache (HF_HOME) is a volume: downloads survive restarts and can be shared. A local
# model folder works too: -v /path/to/sdxs-dreamshaper:/model:ro ... -model /model.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sdxs-server ./examples/server \
 && mkdir -p /out/cache/huggingface

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sdxs-server /sdxs-server
COPY --from=build --chown=65532:65532 /out/cache /cache
ENV HF_HOME=/cache/huggingface
VOLUME ["/cache"]
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/sdxs-server", "-addr", "0.0.0.0:8080"]
CMD ["-model", "IDKiro/sdxs-512-dreamshaper"]
