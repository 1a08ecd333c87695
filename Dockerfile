# imgscan's own container image: the CLI (scan, gate, watch) and the Celery worker.
#
#   docker build -t imgscan:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm imgscan:0.1.0 --help
#   docker run --rm -v "$PWD:/work" imgscan:0.1.0 scan /work/app.tar
#
# Needs BuildKit (the default since Docker 23; DOCKER_BUILDKIT=1 before) for RUN --mount.
# Stage 1 builds wheels for imgscan and its [fleet] extra (Celery on Redis, psycopg);
# stage 2 installs only those wheels, so no compiler, source tree or pip cache ships.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imgscan ./imgscan
COPY signatures ./signatures
RUN pip wheel --wheel-dir /wheels ".[fleet]"

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="imgscan" \
      org.opencontainers.image.description="Container image layer forensics and secret scanning" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/home/imgscan
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "imgscan[fleet]" \
 && groupadd --gid 10001 imgscan \
 && useradd --uid 10001 --gid 10001 --home-dir /home/imgscan --create-home \
      --shell /usr/sbin/nologin imgscan \
 && mkdir -p /work /data && chown 10001:10001 /work /data
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /work
# No HEALTHCHECK: the CLI commands exit; a worker is observed through its Celery queue.
ENTRYPOINT ["imgscan"]
CMD ["--help"]
