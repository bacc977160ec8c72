"""Make ultralytics work offline, from a config directory the project controls.

ultralytics reads its settings when first imported and otherwise reaches for the network
(settings sync, font download, pip auto-install). Call ``configure()`` before importing it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("EDGESYNC_HOME", Path.home() / ".cache" / "edgesync")) / "ultralytics"


def configure(config_dir: Path | None = None) -> Path:
    """Set the offline environment and place a local font; return the config dir. Idempotent."""
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or config_dir or DEFAULT_DIR)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    font = config_dir / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, font)
    return config_dir
