# syntax=docker/dockerfile:1
# EdgeSync cloud trainer on a CUDA PyTorch base. Build from the repository root:
#   docker build -f docker/cloud.Dockerfile -t edgesync-cloud .
# Run with --gpus all to train on the GPU; see docker/README.md.
#
# BASE_IMAGE supplies CUDA-enabled torch and torchvision and Python >= 3.11. They are kept as
# they are: pyproject.toml pins the CPU build used on the development machine, and a pip
# install of the pin would pull a second, multi-GB torch into the image.

ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ARG EDGESYNC_UID=10001

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER root
RUN python3 -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 'EdgeSync needs Python >= 3.11, this BASE_IMAGE has ' + sys.version.split()[0])"

# libGL and glib: ultralytics pulls in opencv-python, whose cv2 needs them at import time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

# Dependencies and the assets extra (the offline SSD teacher) from pyproject.toml, except
# torch and torchvision, pinned by constraint to the base image's CUDA build.
COPY pyproject.toml /tmp/edgesync-src/
RUN --mount=type=cache,target=/root/.cache/pip \
    cd /tmp/edgesync-src \
 && python3 -c "import re, sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; deps = p['dependencies'] + [d for e in sys.argv[1:] for d in p['optional-dependencies'][e]]; print('\n'.join(d for d in deps if re.match(r'[A-Za-z0-9._-]+', d)[0].lower() not in ('torch', 'torchvision')))" assets > requirements.txt \
 && python3 -c "import torch, torchvision; print('torch==' + torch.__version__); print('torchvision==' + torchvision.__version__)" > constraints.txt \
 && python3 -m pip install -c constraints.txt -r requirements.txt

COPY edgesync /tmp/edgesync-src/edgesync
COPY edge_agent /tmp/edgesync-src/edge_agent
COPY cloud_trainer /tmp/edgesync-src/cloud_trainer
RUN python3 -m pip install --no-deps /tmp/edgesync-src \
 && rm -rf /tmp/edgesync-src

COPY configs/ /etc/edgesync/

# A non-root user. /var/lib/edgesync/cloud is the data dir (model registry under registry/):
# mount a volume there, and the same one for `edgesync bootstrap`.
RUN useradd --uid "${EDGESYNC_UID}" --user-group --no-log-init \
        --create-home --home-dir /home/edgesync --shell /usr/sbin/nologin edgesync \
 && mkdir -p /var/lib/edgesync/cloud \
 && chown -R edgesync:edgesync /var/lib/edgesync

# Environment overrides win over the config file: listen on every interface (a container's
# 127.0.0.1 is unreachable from outside) and keep data where the volume is.
ENV EDGESYNC_HOME=/home/edgesync/.cache/edgesync \
    YOLO_CONFIG_DIR=/home/edgesync/.cache/edgesync/ultralytics \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    EDGESYNC_CLOUD__LISTEN=0.0.0.0:50051 \
    EDGESYNC_CLOUD__DATA_DIR=/var/lib/edgesync/cloud \
    EDGESYNC_CLOUD__API__LISTEN=0.0.0.0:8080

USER edgesync
WORKDIR /var/lib/edgesync

RUN python3 -c "from edgesync.ultralytics_env import configure; configure(); import cv2, torch, ultralytics" \
 && edgesync --help > /dev/null

# gRPC for edges; REST API, dashboard and Prometheus /metrics (set EDGESYNC_CLOUD__API__TOKEN)
EXPOSE 50051 8080

# The standard gRPC health service (grpc.health.v1, service ""), on the port of the listen address.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as pb, health_pb2_grpc as rpc; port = os.environ.get('EDGESYNC_CLOUD__LISTEN', '0.0.0.0:50051').rsplit(':', 1)[1]; reply = rpc.HealthStub(grpc.insecure_channel('127.0.0.1:' + port)).Check(pb.HealthCheckRequest(service=''), timeout=3); sys.exit(reply.status != pb.HealthCheckResponse.SERVING)"]

# SIGINT stops the trainer cleanly (health goes NOT_SERVING, workers finish their step).
STOPSIGNAL SIGINT
ENTRYPOINT ["edgesync"]
CMD ["cloud", "serve", "--config", "/etc/edgesync/cloud.yaml"]
