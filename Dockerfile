# syntax=docker/dockerfile:1
# carm's container image: `carm run`, as a non-root user, installed from carm's wheel with every
# dependency pinned by constraints.txt. Build with `docker build -t carm:0.1.0 .`; deploy with
# `kubectl apply -k deploy/` (its Deployment passes the flags).
#
# The base is pinned by tag (exact Python patch release and Debian release) and by digest: a tag
# can be re-pushed, a digest cannot. Override with --build-arg PYTHON_IMAGE=... to move both
# stages to another base (keep it on the Python minor version the constraints were locked on).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# -- build: carm's wheel and the wheels of its pinned dependencies ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY carm ./carm
COPY scripts/install_image.sh /usr/local/bin/install_image.sh
RUN sh /usr/local/bin/install_image.sh wheels /src /wheels

# -- runtime: a venv with only those wheels, no compilers, no build tools -----------------------
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY scripts/install_image.sh /usr/local/bin/install_image.sh
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    sh /usr/local/bin/install_image.sh install /wheels /opt/carm \
    && rm /usr/local/bin/install_image.sh \
    && groupadd --system --gid 65532 carm \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin carm
ENV PATH=/opt/carm/bin:$PATH
# Numeric, so that the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["carm", "run"]
