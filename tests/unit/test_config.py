"""Config loading: strict keys, errors that name file and key, environment overrides, shipped files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgesync.config import (
    CloudConfig,
    EdgeConfig,
    MemoryStoreConfig,
    RedisStoreConfig,
    SSDTeacherConfig,
    UltralyticsTeacherConfig,
    load_cloud_config,
    load_edge_config,
    parse_config,
)
from edgesync.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EDGE_CONFIGS = [CONFIGS / "edge.yaml", CONFIGS / "demo" / "edge.yaml"]
CLOUD_CONFIGS = sorted(
    p for p in [*CONFIGS.glob("*.yaml"), *(CONFIGS / "demo").glob("*.yaml")] if p not in EDGE_CONFIGS
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGESYNC_* override from the shell running the tests leaks into them."""
    for key in list(os.environ):
        if key.startswith(("EDGESYNC_EDGE__", "EDGESYNC_CLOUD__")):
            monkeypatch.delenv(key)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- strict keys and clear errors


def test_misspelt_top_level_key_is_an_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "edge.yaml", "edge_id: cam-1\nmodel_dri: /tmp/models\n")
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "model_dri" in message
    assert "unknown key" in message


def test_misspelt_nested_key_is_named_by_its_dotted_path(tmp_path: Path) -> None:
    path = write(tmp_path / "edge.yaml", "sampler:\n  max_sampels_per_s: 2\n")
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert "sampler.max_sampels_per_s" in str(err.value)
    assert str(path) in str(err.value)


def test_misspelt_cloud_key_is_named_with_its_file(tmp_path: Path) -> None:
    path = write(tmp_path / "cloud.yaml", "training:\n  epocs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_cloud_config(path)
    assert "training.epocs" in str(err.value)
    assert str(path) in str(err.value)


def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "cloud.yaml", "training:\n  heldout_fraction: 1.5\n")
    with pytest.raises(ConfigError, match=r"training\.heldout_fraction"):
        load_cloud_config(path)


@pytest.mark.parametrize("ratio", [0.5, 1e-6])
def test_a_pre_emption_ratio_below_one_is_refused(tmp_path: Path, ratio: float) -> None:
    path = write(tmp_path / "cloud.yaml", f"training:\n  preempt_ratio: {ratio}\n")
    with pytest.raises(ConfigError, match=r"training\.preempt_ratio.*at least 1"):
        load_cloud_config(path)
    for fine in (0, 1, 2.5):
        assert (
            load_cloud_config(
                write(tmp_path / "ok.yaml", f"training:\n  preempt_ratio: {fine}\n")
            ).training.preempt_ratio
            == fine
        )


@pytest.mark.parametrize("value", ["weekly", 0, -64])
def test_a_nominal_batch_that_is_neither_a_positive_count_nor_epoch_is_refused(tmp_path: Path, value) -> None:
    path = write(tmp_path / "cloud.yaml", f"training:\n  nominal_batch: {value}\n")
    with pytest.raises(ConfigError, match=r"training\.nominal_batch"):
        load_cloud_config(path)
    for fine in ("epoch", 16):
        ok = write(tmp_path / "ok.yaml", f"training:\n  nominal_batch: {fine}\n")
        assert load_cloud_config(ok).training.nominal_batch == fine


def test_every_problem_in_a_file_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path / "edge.yaml", "cloud:\n  adress: x\nqueue:\n  max_items: 0\n")
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert any("cloud.adress" in line for line in lines)
    assert any("queue.max_items" in line for line in lines)
    assert all(line.startswith(str(path)) for line in lines)


def test_unsafe_edge_id_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "edge.yaml", "edge_id: ../etc\n")
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert str(err.value).startswith(f"{path}: edge_id: ")
    assert "'../etc'" in str(err.value)


def test_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_edge_config(path)


def test_invalid_yaml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "cloud: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_cloud_config(path)


def test_a_top_level_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_cloud_config(path)


def test_empty_file_and_no_file_give_the_defaults(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "")
    assert load_edge_config(empty) == EdgeConfig()
    assert load_cloud_config(None) == CloudConfig()


# ---------------------------------------------------------------- environment overrides


def test_edge_env_override_replaces_one_nested_value_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "edge.yaml", "cloud:\n  address: file-host:1\n  heartbeat_s: 7\n")
    monkeypatch.setenv("EDGESYNC_EDGE__CLOUD__ADDRESS", "env-host:50052")
    cfg = load_edge_config(path)
    assert cfg.cloud.address == "env-host:50052"
    assert cfg.cloud.heartbeat_s == 7


def test_env_override_values_become_the_field_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESYNC_EDGE__QUEUE__MAX_ITEMS", "5")
    monkeypatch.setenv("EDGESYNC_EDGE__SAMPLER__CONF_LOW", "0.3")
    monkeypatch.setenv("EDGESYNC_EDGE__SOURCE__REALTIME", "false")
    monkeypatch.setenv("EDGESYNC_EDGE__SINK", "null")
    cfg = load_edge_config(None)
    assert cfg.queue.max_items == 5
    assert cfg.sampler.conf_low == pytest.approx(0.3)
    assert cfg.source.realtime is False
    assert cfg.sink is None


def test_numeric_looking_env_value_stays_a_string_for_string_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    # Camera index 0 and CUDA device 0 are strings in the config, not integers.
    monkeypatch.setenv("EDGESYNC_EDGE__SOURCE__URI", "0")
    monkeypatch.setenv("EDGESYNC_EDGE__STUDENT__DEVICE", "0")
    monkeypatch.setenv("EDGESYNC_EDGE__EDGE_ID", "0042")
    cfg = load_edge_config(None)
    assert cfg.source.uri == "0"
    assert cfg.student.device == "0"
    assert cfg.edge_id == "0042"


def test_cloud_env_override_sets_the_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESYNC_CLOUD__STORE__URL", "redis://redis.internal:6380/2")
    cfg = load_cloud_config(CONFIGS / "cloud-redis.yaml")
    assert isinstance(cfg.store, RedisStoreConfig)
    assert cfg.store.url == "redis://redis.internal:6380/2"
    assert cfg.store.prefix == "edgesync"


def test_cloud_env_override_accepts_a_yaml_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESYNC_CLOUD__TEACHER__CLASSES", "[person, bus]")
    cfg = load_cloud_config(CONFIGS / "cloud.yaml")
    assert cfg.teacher.classes == ["person", "bus"]


def test_misspelt_env_override_is_an_error_naming_the_environment_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESYNC_EDGE__CLOUD__ADRESS", "x:1")
    with pytest.raises(ConfigError) as err:
        load_edge_config(None)
    assert "cloud.adress" in str(err.value)
    assert "EDGESYNC_EDGE__" in str(err.value)


def test_cloud_overrides_do_not_leak_into_edge_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESYNC_CLOUD__LISTEN", "0.0.0.0:6000")  # `listen` is not an edge key
    assert load_edge_config(None) == EdgeConfig()
    assert load_cloud_config(None).listen == "0.0.0.0:6000"


# ---------------------------------------------------------------- redis URL and unions


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache:6380/1", "unix:///run/redis.sock"])
def test_redis_store_accepts_redis_urls(url: str) -> None:
    cfg = parse_config(CloudConfig, {"store": {"type": "redis", "url": url}})
    assert cfg.store.url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", ""])
def test_redis_store_refuses_other_urls_naming_them(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CloudConfig, {"store": {"type": "redis", "url": url}}, "cloud.yaml")
    assert "store" in str(err.value) and "url" in str(err.value)
    assert repr(url) in str(err.value)


def test_store_type_picks_the_store_config() -> None:
    assert isinstance(parse_config(CloudConfig, {"store": {"type": "memory"}}).store, MemoryStoreConfig)
    assert isinstance(parse_config(CloudConfig, {"store": {"type": "redis"}}).store, RedisStoreConfig)
    assert isinstance(CloudConfig().store, MemoryStoreConfig)


def test_unknown_store_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="store.*sqlite"):
        parse_config(CloudConfig, {"store": {"type": "sqlite"}})


def test_options_of_another_store_type_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"store\..*url.*unknown key"):
        parse_config(CloudConfig, {"store": {"type": "memory", "url": "redis://x"}})


def test_teacher_type_picks_the_teacher_config() -> None:
    cfg = parse_config(CloudConfig, {"teacher": {"type": "ultralytics", "weights": "/models/t.pt"}})
    assert isinstance(cfg.teacher, UltralyticsTeacherConfig)
    assert cfg.teacher.weights == Path("/models/t.pt")
    assert isinstance(CloudConfig().teacher, SSDTeacherConfig)


def test_ultralytics_teacher_without_weights_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"teacher\..*weights"):
        parse_config(CloudConfig, {"teacher": {"type": "ultralytics"}}, "cloud.yaml")


# ---------------------------------------------------------------- shipped files


def test_shipped_configs_are_found() -> None:
    assert all(p.is_file() for p in EDGE_CONFIGS)
    assert CONFIGS / "cloud.yaml" in CLOUD_CONFIGS
    assert CONFIGS / "demo" / "cloud.yaml" in CLOUD_CONFIGS


@pytest.mark.parametrize("path", EDGE_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_edge_config_parses(path: Path) -> None:
    assert isinstance(load_edge_config(path), EdgeConfig)


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_cloud_config_parses(path: Path) -> None:
    assert isinstance(load_cloud_config(path), CloudConfig)
