"""The benchmark's manager orders: pinned by name, and the default is the one named manager-smith-rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state.memory import MemoryStore
from edgesync.config import ManagerConfig, TrainingConfig
from edgesync_bench.strategies import STRATEGIES

PRE_EMPTION = ("preempt_by", "preempt_ratio", "preempt_delivers")


def _order(name: str, tmp_path: Path) -> tuple:
    """(manager.rank, training.preempt_by, preempt_ratio, preempt_delivers) a strategy's jobs run under."""
    strategy = STRATEGIES[name]
    trigger = strategy.trigger(MemoryStore(), ModelRegistry(tmp_path / name), "cam-1", lambda: 0.0)
    training = TrainingConfig().model_copy(update=strategy.training)
    return (trigger.manager.cfg.rank, *(getattr(training, key) for key in PRE_EMPTION))


def test_the_default_manager_is_manager_smith_rate(tmp_path: Path) -> None:
    """`manager` follows the config's defaults, so its results are manager-smith-rate's."""
    assert not set(PRE_EMPTION) & set(STRATEGIES["manager"].training)
    assert _order("manager", tmp_path) == _order("manager-smith-rate", tmp_path)
    assert _order("manager", tmp_path) == ("gain_per_frame", "gain_rate", 2.0, True)
    assert ManagerConfig().rank == "gain_per_frame"


@pytest.mark.parametrize(
    ("name", "order"),
    [
        ("manager-gain", ("gain", "priority", 2.0, False)),  # the default until session 32
        ("manager-smith", ("gain_per_frame", "priority", 2.0, False)),
        ("manager-delivers", ("gain", "priority", 2.0, True)),
        ("manager-rate", ("gain", "gain_rate", 2.0, True)),
        ("manager-eager", ("gain", "priority", 1.0, True)),
        ("manager-smith-eager", ("gain_per_frame", "priority", 1.0, True)),
    ],
)
def test_the_named_orders_keep_their_meaning_whatever_the_defaults(name: str, order: tuple, tmp_path: Path) -> None:
    assert _order(name, tmp_path) == order


def test_the_baselines_see_frames_as_they_come_and_the_system_may_choose_auto_levels() -> None:
    def views(name: str) -> list[str]:
        return TrainingConfig().model_copy(update=STRATEGIES[name].training).preprocess

    assert views("uniform") == views("shoggoth") == ["none"]  # as published
    for name in ("edgesync", "manager", "fifo", "fair"):
        assert views(name) == ["auto-levels", "none"], name  # auto levels preferred
        assert views(f"{name}-nolevels") == ["none"], name  # the default before session 34
    assert STRATEGIES["static-levels"].preprocess == "auto-levels" and STRATEGIES["static"].preprocess == "none"
