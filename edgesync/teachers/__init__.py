"""Teacher plugins: the cloud labels uploaded frames with whichever backend the config names."""

from __future__ import annotations

from edgesync.config import SSDTeacherConfig, TeacherConfig, UltralyticsTeacherConfig
from edgesync.errors import ConfigError
from edgesync.teachers.base import Teacher

__all__ = ["Teacher", "build_teacher"]


def build_teacher(cfg: TeacherConfig) -> Teacher:
    """Build the teacher the config's ``type`` selects; backends are imported only when chosen."""
    if isinstance(cfg, SSDTeacherConfig):
        from edgesync.teachers.ssd import SSDTeacher

        return SSDTeacher(cfg)
    if isinstance(cfg, UltralyticsTeacherConfig):
        from edgesync.teachers.ultralytics_teacher import UltralyticsTeacher

        return UltralyticsTeacher(cfg)
    raise ConfigError(f"unknown teacher config {type(cfg).__name__}")
