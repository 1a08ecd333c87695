#!/bin/sh
# Gate without a Docker engine on the push side: scan an OCI archive (from BuildKit) and,
# if it passes, push exactly the scanned blobs to the registry over the distribution API.
#   IMAGE_NAME=registry.example.com/team/app TAG=1.4.0 REGISTRY_USER=robot \
#     REGISTRY_TOKEN_FILE=/run/secrets/registry-token examples/ci/gate-archive.sh
set -u
: "${IMAGE_NAME:?}" "${TAG:?}" "${REGISTRY_USER:?}" "${REGISTRY_TOKEN_FILE:?}"

docker buildx build --output "type=oci,dest=app.oci.tar" . || exit 3
imgscan gate app.oci.tar --push "$IMAGE_NAME:$TAG" --quiet --format json --output imgscan.json \
    --username "$REGISTRY_USER" --password-stdin <"$REGISTRY_TOKEN_FILE"
