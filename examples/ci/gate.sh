#!/bin/sh
# A generic CI step (GitLab CI, Jenkins, Buildkite, ...): build, gate, push only on pass.
#   IMAGE_NAME=registry.example.com/team/app TAG=$CI_COMMIT_SHA examples/ci/gate.sh
# The engine pushes with its own `docker login` credentials.
set -u
: "${IMAGE_NAME:?set IMAGE_NAME, e.g. registry.example.com/team/app}"
: "${TAG:?set TAG, e.g. the commit id}"

docker build -t "app:$TAG" . || exit 3
imgscan gate "docker://app:$TAG" --push "$IMAGE_NAME:$TAG" --quiet \
    --format sarif --output imgscan.sarif
rc=$?
case "$rc" in
  0) echo "imgscan: passed; pushed $IMAGE_NAME:$TAG" ;;
  1) echo "imgscan: policy failed; nothing pushed (see imgscan.sarif)" ;;
  2) echo "imgscan: usage error (flags, .imgscan.toml or baseline file)" ;;
  3) echo "imgscan: could not scan or push; safe to retry" ;;
  *) echo "imgscan: exit $rc" ;;
esac
exit "$rc"
