"""The cloud trainer's REST API, dashboard and Prometheus endpoint (see cloud_trainer.api.app)."""

from cloud_trainer.api.app import create_app
from cloud_trainer.api.server import ApiServer

__all__ = ["ApiServer", "create_app"]
