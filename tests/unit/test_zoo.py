"""The model zoo: specialists remembered by scene signature and sent again when a scene returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud_trainer.registry import ModelRegistry
from cloud_trainer.zoo import ModelZoo
from edgesync.errors import InvalidInput
from edgesync.types import ModelManifest, SceneChange
from edgesync.weights import sha256_hex

DAY = (1.0, 0.0, 0.0)
NIGHT = (0.0, 1.0, 0.0)
FOG = (0.0, 0.0, 1.0)


def register(registry: ModelRegistry, payload: bytes, scene_start: float = 0.0, preprocess: str = "none") -> int:
    manifest = ModelManifest(
        0, 0, sha256_hex(payload), len(payload), "yolov8n.yaml", ("person",), 64,
        metrics={"scene_start": scene_start}, preprocess=preprocess,
    )  # fmt: skip
    return registry.register("cam", payload, manifest).version


def change(t: float, previous_start: float, previous, new, ran: int) -> SceneChange:
    return SceneChange("cam", t, previous_start, tuple(previous), tuple(new), ran)


@pytest.fixture
def zoo(tmp_path: Path) -> ModelZoo:
    return ModelZoo(ModelRegistry(tmp_path / "registry"))


def test_a_returning_scene_gets_its_specialist_again_as_the_newest_version(zoo: ModelZoo) -> None:
    registry = zoo.registry
    register(registry, b"day model")  # v1, the first model: the day specialist
    assert zoo.on_scene_change(change(100.0, 0.0, DAY, NIGHT, ran=1)) is None  # night is new
    night = register(registry, b"night model", scene_start=100.0)  # v2, trained for that night
    sent = zoo.on_scene_change(change(200.0, 100.0, NIGHT, (0.9, 0.1, 0.0), ran=night))  # day again
    assert sent is not None and sent.version == 3
    assert registry.load("cam", 3)[1] == b"day model"
    assert sent.metrics["zoo_of"] == 1 and sent.metrics["scene_start"] == 200.0
    sent = zoo.on_scene_change(change(300.0, 200.0, DAY, (0.1, 0.95, 0.0), ran=3))  # night again
    assert sent is not None and registry.load("cam", sent.version)[1] == b"night model"


def test_an_unknown_scene_gets_the_general_first_model_instead_of_a_specialist(zoo: ModelZoo) -> None:
    register(zoo.registry, b"day model")
    assert zoo.on_scene_change(change(100.0, 0.0, DAY, NIGHT, ran=1)) is None  # already general
    night = register(zoo.registry, b"night model", scene_start=100.0)
    sent = zoo.on_scene_change(change(200.0, 100.0, NIGHT, FOG, ran=night))
    assert sent is not None and zoo.registry.load("cam", sent.version)[1] == b"day model"
    assert sent.metrics["scene_start"] == 0.0  # not trained for fog: the edge keeps sampling it hard
    assert zoo.on_scene_change(change(300.0, 200.0, FOG, (0.0, 0.5, 0.5), ran=sent.version)) is None


def test_the_general_model_goes_out_seeing_frames_as_the_specialist_it_replaces_did(zoo: ModelZoo) -> None:
    register(zoo.registry, b"day model")  # v1 sees frames as they come
    night = register(zoo.registry, b"night model", scene_start=100.0, preprocess="auto-levels")
    sent = zoo.on_scene_change(change(200.0, 100.0, NIGHT, FOG, ran=night))
    assert sent is not None and zoo.registry.load("cam", sent.version)[1] == b"day model"
    assert sent.preprocess == "auto-levels" and zoo.registry.manifest("cam", 1).preprocess == "none"
    # a specialist of a returning scene goes out as it was chosen
    assert zoo.on_scene_change(change(300.0, 200.0, FOG, (0.05, 0.95, 0.0), ran=sent.version)).preprocess == (
        "auto-levels"
    )


def test_the_general_model_goes_out_in_the_preferred_view_when_one_is_given(tmp_path: Path) -> None:
    """The view a specialist's frames chose says nothing of the next scene's: with training.preprocess'
    first view given, the general model goes out seeing frames that way whatever the specialist did."""
    zoo = ModelZoo(ModelRegistry(tmp_path / "registry"), view="auto-levels")
    register(zoo.registry, b"day model")
    night = register(zoo.registry, b"night model", scene_start=100.0)  # its frames chose frames as they come
    sent = zoo.on_scene_change(change(200.0, 100.0, NIGHT, FOG, ran=night))
    assert sent is not None and zoo.registry.load("cam", sent.version)[1] == b"day model"
    assert sent.preprocess == "auto-levels"


def test_an_unknown_view_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="sharpen"):
        ModelZoo(ModelRegistry(tmp_path / "registry"), view="sharpen")


def test_a_model_that_arrived_for_another_scene_is_not_remembered_for_this_one(zoo: ModelZoo) -> None:
    register(zoo.registry, b"day model")
    zoo.on_scene_change(change(100.0, 0.0, DAY, NIGHT, ran=1))
    late = register(zoo.registry, b"trained on night, deployed in fog", scene_start=100.0)
    zoo.on_scene_change(change(200.0, 150.0, FOG, DAY, ran=late))  # ran through fog (started 150)
    assert late not in zoo.specialists("cam")


def test_malformed_signatures_are_refused(zoo: ModelZoo) -> None:
    register(zoo.registry, b"day model")
    with pytest.raises(InvalidInput, match="signatures"):
        zoo.on_scene_change(change(1.0, 0.0, DAY, (1.0, 2.0), ran=1))
    with pytest.raises(InvalidInput, match="signatures"):
        zoo.on_scene_change(change(1.0, 0.0, DAY, (np.nan, 0.0, 0.0), ran=1))


def test_the_first_scene_is_remembered_with_the_first_model_not_a_fine_tune_of_it(zoo: ModelZoo) -> None:
    register(zoo.registry, b"bootstrap model")  # v1, bootstrapped on the first scene
    tuned = register(zoo.registry, b"tuned on 24 frames of it")  # v2, also scene_start 0
    zoo.on_scene_change(change(100.0, 0.0, DAY, NIGHT, ran=tuned))
    assert list(zoo.specialists("cam")) == [1]


def test_a_model_trained_on_a_return_of_a_scene_supersedes_the_specialist_sent_for_it(zoo: ModelZoo) -> None:
    register(zoo.registry, b"day model")
    zoo.on_scene_change(change(100.0, 0.0, DAY, NIGHT, ran=1))
    first_night = register(zoo.registry, b"night model", scene_start=100.0)
    zoo.on_scene_change(change(200.0, 100.0, NIGHT, DAY, ran=first_night))  # day: v1 sent as v3
    sent = zoo.on_scene_change(change(300.0, 200.0, DAY, NIGHT, ran=3))  # night again: v2 sent as v4
    assert zoo.registry.load("cam", sent.version)[1] == b"night model"
    better = register(zoo.registry, b"night model, tuned on the second night", scene_start=300.0)
    zoo.on_scene_change(change(400.0, 300.0, NIGHT, DAY, ran=better))
    assert first_night not in zoo.specialists("cam") and better in zoo.specialists("cam")
    sent = zoo.on_scene_change(change(500.0, 400.0, DAY, NIGHT, ran=sent.version + 2))
    assert zoo.registry.load("cam", sent.version)[1] == b"night model, tuned on the second night"


def test_nothing_is_sent_when_the_edge_already_holds_the_models_weights(zoo: ModelZoo) -> None:
    """A fine-tune that kept its starting point registers nothing (worker), but a copy the zoo sent
    is still a specialist by its metrics: the general model it would send next is the same bytes."""
    register(zoo.registry, b"day model")  # v1, the general model
    assert zoo.on_scene_change(change(100.0, 0.0, DAY, NIGHT, ran=1)) is None
    fog_copy = register(zoo.registry, b"day model", scene_start=100.0)  # v2: chosen for night, v1's bytes
    assert zoo.on_scene_change(change(200.0, 100.0, NIGHT, FOG, ran=fog_copy)) is None  # not v1 again
    assert zoo.registry.latest_version("cam") == fog_copy
