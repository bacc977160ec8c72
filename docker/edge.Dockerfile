# syntax=docker/dockerfile:1
# EdgeSync edge agent for an x86-64 laptop or PC, CPU only. Build from the repository root:
#   docker build -f docker/edge.Dockerfile -t edgesync-edge .
# Running it: docker/README.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# torch and torchvision come from PyTorch's CPU-only index (a few hundred MB instead of PyPI's
# CUDA wheels). The versions must equal the pins in pyproject.toml (tests/unit/test_docker.py
# checks), so the `pip install .` below keeps them instead of fetching PyPI's CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG EDGESYNC_UID=10001

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libGL and glib: ultralytics pulls in opencv-python, whose cv2 needs them at import time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m pip install --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# The project and its extras (assets: the offline SSD teacher, so `edgesync bootstrap` works here too).
COPY pyproject.toml /tmp/edgesync-src/
COPY edgesync /tmp/edgesync-src/edgesync
COPY edge_agent /tmp/edgesync-src/edge_agent
COPY cloud_trainer /tmp/edgesync-src/cloud_trainer
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m pip install "/tmp/edgesync-src[assets]" \
 && rm -rf /tmp/edgesync-src

# Example configs; mount your own over /etc/edgesync (or one file) to replace them.
COPY configs/ /etc/edgesync/

# A non-root user in the video group (cameras at /dev/video*). /var/lib/edgesync/edge holds
# the frames sink, the upload spill and received models: mount a volume there to keep them.
RUN useradd --uid "${EDGESYNC_UID}" --user-group --groups video --no-log-init \
        --create-home --home-dir /home/edgesync --shell /usr/sbin/nologin edgesync \
 && mkdir -p /var/lib/edgesync/edge \
 && chown -R edgesync:edgesync /var/lib/edgesync

# Environment overrides win over the config file (edgesync/config.py), so the data paths are
# where the volume and the healthcheck expect them whatever config is mounted.
# ultralytics stays offline and writes its settings under the user's home.
ENV EDGESYNC_HOME=/home/edgesync/.cache/edgesync \
    YOLO_CONFIG_DIR=/home/edgesync/.cache/edgesync/ultralytics \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    EDGESYNC_EDGE__SINK=/var/lib/edgesync/edge/frames.jsonl \
    EDGESYNC_EDGE__QUEUE__SPILL_DIR=/var/lib/edgesync/edge/spill \
    EDGESYNC_EDGE__MODEL_DIR=/var/lib/edgesync/edge/models \
    EDGESYNC_EDGE__METRICS_LISTEN=0.0.0.0:9101

USER edgesync
WORKDIR /var/lib/edgesync

# Fail the build, not the first run: the CLI loads and ultralytics imports offline as this user
# (this also places ultralytics' settings and font in YOLO_CONFIG_DIR).
RUN python3 -c "from edgesync.ultralytics_env import configure; configure(); import cv2, torch, ultralytics" \
 && edgesync --help > /dev/null

# Healthy while frames flow: the agent appends one line per frame to the sink, so a sink not
# written for a minute means a stalled or finished stream. The start period covers the wait
# for the cloud's first model (up to 300 s) and the warm-up.
# Prometheus /metrics of the edge
EXPOSE 9101
HEALTHCHECK --interval=30s --timeout=5s --start-period=6m --retries=3 \
    CMD test -n "$(find "$EDGESYNC_EDGE__SINK" -mmin -1 2>/dev/null)"

# SIGINT is the agent's clean stop: it finishes the frame and keeps pending samples on disk.
STOPSIGNAL SIGINT
ENTRYPOINT ["edgesync"]
CMD ["edge", "run", "--config", "/etc/edgesync/edge.yaml"]
