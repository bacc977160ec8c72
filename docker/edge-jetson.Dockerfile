# syntax=docker/dockerfile:1
# EdgeSync edge agent for an NVIDIA Jetson (aarch64), on NVIDIA's PyTorch for JetPack.
# Build on the Jetson (or with buildx for linux/arm64) from the repository root:
#   docker build -f docker/edge-jetson.Dockerfile -t edgesync-edge-jetson .
# Run with --runtime nvidia; see docker/README.md.
#
# BASE_IMAGE must ship CUDA-enabled torch and torchvision for the board's JetPack, and Python
# >= 3.11 (pyproject.toml). NGC's iGPU PyTorch 24.12 (JetPack 6, Python 3.12) does. The older
# nvcr.io/nvidia/l4t-pytorch:r35.x images (JetPack 5) have Python 3.8 and are refused below.

ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:24.12-py3-igpu
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL=https://pypi.org/simple
ARG EDGESYNC_UID=10001

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

USER root
RUN python3 -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 'EdgeSync needs Python >= 3.11, this BASE_IMAGE has ' + sys.version.split()[0])"

# libGL and glib for opencv-python's cv2 (glib is libglib2.0-0t64 from Ubuntu 24.04 on).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 \
        "$(if apt-cache show libglib2.0-0t64 > /dev/null 2>&1; then echo libglib2.0-0t64; else echo libglib2.0-0; fi)" \
 && rm -rf /var/lib/apt/lists/*

# The project's dependencies except torch and torchvision, read from pyproject.toml, installed
# under a constraint that pins the base image's own torch: PyPI's aarch64 torch is CPU-only,
# so a dependency that asked for another torch fails the build instead of losing the GPU.
COPY pyproject.toml /tmp/edgesync-src/
RUN --mount=type=cache,target=/root/.cache/pip \
    cd /tmp/edgesync-src \
 && python3 -c "import re, sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; deps = p['dependencies'] + [d for e in sys.argv[1:] for d in p['optional-dependencies'][e]]; print('\n'.join(d for d in deps if re.match(r'[A-Za-z0-9._-]+', d)[0].lower() not in ('torch', 'torchvision')))" > requirements.txt \
 && python3 -c "import torch, torchvision; print('torch==' + torch.__version__); print('torchvision==' + torchvision.__version__)" > constraints.txt \
 && python3 -m pip install --index-url "${PIP_INDEX_URL}" -c constraints.txt -r requirements.txt

# The project itself, without letting pip touch torch (pyproject pins the desktop CPU build).
COPY edgesync /tmp/edgesync-src/edgesync
COPY edge_agent /tmp/edgesync-src/edge_agent
COPY cloud_trainer /tmp/edgesync-src/cloud_trainer
RUN python3 -m pip install --index-url "${PIP_INDEX_URL}" --no-deps /tmp/edgesync-src \
 && rm -rf /tmp/edgesync-src

COPY configs/ /etc/edgesync/

# Non-root, in the video group: Jetson's GPU and camera device nodes belong to it.
RUN useradd --uid "${EDGESYNC_UID}" --user-group --groups video --no-log-init \
        --create-home --home-dir /home/edgesync --shell /usr/sbin/nologin edgesync \
 && mkdir -p /var/lib/edgesync/edge \
 && chown -R edgesync:edgesync /var/lib/edgesync

# Same data paths and offline ultralytics as the x86 image; the student runs on the GPU.
ENV EDGESYNC_HOME=/home/edgesync/.cache/edgesync \
    YOLO_CONFIG_DIR=/home/edgesync/.cache/edgesync/ultralytics \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    EDGESYNC_EDGE__SINK=/var/lib/edgesync/edge/frames.jsonl \
    EDGESYNC_EDGE__QUEUE__SPILL_DIR=/var/lib/edgesync/edge/spill \
    EDGESYNC_EDGE__MODEL_DIR=/var/lib/edgesync/edge/models \
    EDGESYNC_EDGE__METRICS_LISTEN=0.0.0.0:9101 \
    EDGESYNC_EDGE__STUDENT__DEVICE=cuda:0

USER edgesync
WORKDIR /var/lib/edgesync

RUN python3 -c "from edgesync.ultralytics_env import configure; configure(); import cv2, torch, ultralytics" \
 && edgesync --help > /dev/null

# Healthy while frames flow (see edge.Dockerfile).
# Prometheus /metrics of the edge
EXPOSE 9101
HEALTHCHECK --interval=30s --timeout=5s --start-period=6m --retries=3 \
    CMD test -n "$(find "$EDGESYNC_EDGE__SINK" -mmin -1 2>/dev/null)"

STOPSIGNAL SIGINT
ENTRYPOINT ["edgesync"]
CMD ["edge", "run", "--config", "/etc/edgesync/edge.yaml"]
