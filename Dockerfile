# syntax=docker/dockerfile:1
# One image for every role; the command picks it:
#   docker run IMAGE serve     gRPC API on 50051, /metrics /health /healthz on 8080
#   docker run IMAGE worker    arq worker (processes exports)
# tests/test_dockerfile.py checks this file against pyproject.toml and docs/operations.md.

ARG PYTHON_VERSION=3.11

# --- build: resolve and install the package into a virtualenv --------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

# Every dependency ships manylinux wheels on amd64 (PyAV bundles FFmpeg); the compilers are
# here for a platform where one does not, and stay out of the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY generated/ generated/
COPY sparc_video/ sparc_video/
COPY workers/ workers/
RUN pip install --no-cache-dir .

# --- runtime: the virtualenv on a clean slim base, as an unprivileged user ------------------
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VERSION=0.1.0
# The commit built from: docker build --build-arg REVISION=$(git rev-parse HEAD) .
ARG REVISION=""
LABEL org.opencontainers.image.title="sparc-video" \
      org.opencontainers.image.description="SPARC video service: gRPC exports processed by arq workers with PyAV" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

RUN groupadd --system --gid 10001 sparc \
    && useradd --system --uid 10001 --gid sparc --home-dir /var/lib/sparc-video \
       --create-home --shell /usr/sbin/nologin sparc

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOCAL_STORAGE_DIR=/var/lib/sparc-video/storage \
    VIDEO_TEMP_DIR=/tmp/sparc-video

USER 10001:10001
WORKDIR /var/lib/sparc-video

# gRPC API, HTTP (metrics, health, local downloads), a worker's and a recorder's own /metrics,
# a recorder's live view (gRPC, HTTP) as docs/recording.md's manifest sets them.
EXPOSE 50051 8080 9091 9092 50052 8081
# Both commands drain on SIGTERM: the server stops taking calls and ends watches so clients
# resume elsewhere; the worker hands unfinished exports back (WORKER_SHUTDOWN_GRACE).
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the roles listen on different ports, and orchestrators probe per role
# (Kubernetes ignores HEALTHCHECK; see the gRPC probes in docs/operations.md).
ENTRYPOINT ["sparc-video"]
CMD ["serve"]
