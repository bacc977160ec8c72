"""The Docker images and the compose file agree with the code, checked without Docker.

No Docker engine runs where EdgeSync is developed, so these tests read docker/*.Dockerfile and
docker/compose.yaml the way Docker would and hold them against the repository: copied files
exist, commands are real `edgesync` subcommands, the configs load with the images' and the
compose file's environment through the real loader, ports and addresses line up, images run as
a non-root user, and both healthchecks are executed here against a real gRPC health service and
a real sink file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from edgesync.cli import app
from edgesync.config import load_cloud_config, load_edge_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILES = ["edge.Dockerfile", "edge-jetson.Dockerfile", "cloud.Dockerfile"]
CONFIG_MOUNT = PurePosixPath("/etc/edgesync")  # where configs/ lands in every container
EDGE_DATA = PurePosixPath("/var/lib/edgesync/edge")
CLOUD_DATA = PurePosixPath("/var/lib/edgesync/cloud")


# ---------------------------------------------------------------- reading a Dockerfile


@dataclass
class Dockerfile:
    """The instructions of a single-stage Dockerfile that these tests check."""

    name: str
    base: str = ""
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    user: str | None = None
    expose: list[int] = field(default_factory=list)
    healthcheck: str | list[str] | None = None
    entrypoint: list[str] | str = field(default_factory=list)
    cmd: list[str] | str = field(default_factory=list)
    stopsignal: str | None = None
    from_raw: str = ""


def _logical_lines(text: str) -> list[str]:
    """Instructions with continuation lines joined and comment lines dropped, as Docker does."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((pending + line).strip())
        pending = ""
    if pending:
        out.append(pending.strip())
    return out


def _expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), value)


def _exec_or_shell(rest: str) -> list[str] | str:
    return json.loads(rest) if rest.startswith("[") else rest


def parse_dockerfile(name: str) -> Dockerfile:
    """Parse docker/<name>; fails on instructions these images are not expected to use."""
    df = Dockerfile(name)
    for line in _logical_lines((DOCKER / name).read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG":
            key, _, default = rest.partition("=")
            df.args[key] = default
        elif keyword == "FROM":
            assert not df.base, f"{name}: one stage expected"
            df.from_raw, df.base = rest, _expand(rest, df.args)
        elif keyword == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                assert sep, f"{name}: ENV {token!r} is not KEY=VALUE"
                df.env[key] = _expand(value, {**df.args, **df.env})
        elif keyword in ("COPY", "ADD"):
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            df.copies.append((parts[:-1], parts[-1]))
        elif keyword == "RUN":
            df.runs.append(re.sub(r"^(--\S+\s+)+", "", rest))
        elif keyword == "USER":
            df.user = rest
        elif keyword == "EXPOSE":
            df.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif keyword == "HEALTHCHECK":
            _options, _, command = re.split(r"(?:^|\s)(CMD)\s", rest, maxsplit=1)
            df.healthcheck = _exec_or_shell(command.strip())
        elif keyword == "ENTRYPOINT":
            df.entrypoint = _exec_or_shell(rest)
        elif keyword == "CMD":
            df.cmd = _exec_or_shell(rest)
        elif keyword == "STOPSIGNAL":
            df.stopsignal = rest
        elif keyword in ("WORKDIR", "LABEL"):
            pass
        else:
            raise AssertionError(f"{name}: instruction {keyword} is not checked by this test")
    return df


def _default_argv(df: Dockerfile) -> list[str]:
    assert isinstance(df.entrypoint, list) and isinstance(df.cmd, list), f"{df.name}: use the exec form"
    return [*df.entrypoint, *df.cmd]


# ---------------------------------------------------------------- reading compose.yaml


class ComposeRefuses(Exception):
    """Compose stops with this message: a ${VAR:?message} variable is unset or empty."""


def _interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} (nested), ${VAR:?error} and $$ with the given host environment."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("$$", i):
            out, i = out + "$", i + 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                else:
                    depth, j = depth - (text[j] == "}"), j + 1
            body = text[i + 2 : j - 1]
            name, op, default = re.match(r"(\w+)(:?[-?+]?)(.*)", body, re.S).groups()
            assert op in ("", ":-", "-", ":?"), f"this test reads only ${{VAR}}, :- and :?, not {body!r}"
            value = environ.get(name)
            if op == ":?" and not value:
                raise ComposeRefuses(f"{name}: {default}")
            if op in (":-", "-") and (value is None or (op == ":-" and not value)):
                value = _interpolate(default, environ)
            assert value is not None, f"compose needs ${{{name}}} set: {text!r}"
            out, i = out + value, j
        else:
            out, i = out + text[i], i + 1
    return out


def _interpolated(node: object, environ: dict[str, str]) -> object:
    if isinstance(node, str):
        return _interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolated(v, environ) for v in node]
    if isinstance(node, dict):
        return {k: _interpolated(v, environ) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml as Compose sees it on a host where only the required EDGESYNC_API_TOKEN is set."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return _interpolated(raw, {"HOME": "/home/someone", "EDGESYNC_API_TOKEN": "a-real-token-0123456789"})


def test_compose_refuses_to_start_without_an_api_token() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    with pytest.raises(ComposeRefuses, match="EDGESYNC_API_TOKEN"):
        _interpolated(raw, {"HOME": "/home/someone"})


@pytest.fixture(scope="module")
def images() -> dict[str, Dockerfile]:
    return {name: parse_dockerfile(name) for name in DOCKERFILES}


def _service_image(service: dict) -> Dockerfile:
    dockerfile = (COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve()
    assert dockerfile.is_file(), f"compose builds from {dockerfile}, which does not exist"
    assert dockerfile.parent == DOCKER, f"{dockerfile} is not one of docker/*.Dockerfile"
    return parse_dockerfile(dockerfile.name)


def _service_env(service: dict) -> dict[str, str]:
    """The container's environment: the image's ENV, then the compose file's."""
    env = dict(_service_image(service).env) if "build" in service else {}
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env.update({k: str(v) for k, v in declared.items()})
    return env


def _service_argv(service: dict) -> list[str]:
    image = _service_image(service)
    entrypoint = service.get("entrypoint", image.entrypoint)
    command = service.get("command", image.cmd)
    as_list = [shlex.split(x) if isinstance(x, str) else list(x) for x in (entrypoint, command)]
    return as_list[0] + as_list[1]


def _mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of every volume of a service, short or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out.append((source, target))
    return out


def _published_container_ports(service: dict) -> list[int]:
    ports = []
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).split(":")[-1]
        ports.append(int(str(target).split("/")[0]))
    return ports


def _edgesync_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def _load_for(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """The config the container's `edgesync` would load: its --config file plus its environment."""
    config = REPO / "configs" / PurePosixPath(argv[argv.index("--config") + 1]).relative_to(CONFIG_MOUNT)
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("EDGESYNC_")]:
            patch.delenv(key)
        for key, value in env.items():
            if key.startswith("EDGESYNC_"):
                patch.setenv(key, value)
        if argv[1:3] == ["edge", "run"]:
            return load_edge_config(config)
        assert argv[1] in ("cloud", "bootstrap"), argv
        return load_cloud_config(config)


def _is_under(path: object, root: str | PurePosixPath) -> bool:
    return PurePosixPath(str(path)).is_relative_to(PurePosixPath(str(root)))


# ---------------------------------------------------------------- build context and images


def _dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops path: a pattern matching the path or any parent directory."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tails = ["/".join(parts[i : j + 1]) for i in range(len(parts)) for j in range(i, len(parts))]
            if any(fnmatch.fnmatchcase(t, pattern[3:]) for t in tails):
                return True
        elif any(fnmatch.fnmatchcase(p, pattern.rstrip("/")) for p in prefixes):
            return True
    return False


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copy_source_exists_in_the_repo_and_is_not_dockerignored(name: str) -> None:
    df = parse_dockerfile(name)
    assert df.copies, f"{name} copies nothing"
    patterns = _dockerignore_patterns()
    for sources, _dest in df.copies:
        for source in sources:
            assert (REPO / source).exists(), f"{name}: COPY {source} does not exist in the repo"
            assert not _ignored(source.rstrip("/"), patterns), f"{name}: COPY {source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_caches_out_of_the_build_context() -> None:
    patterns = _dockerignore_patterns()
    local_state = [".venv/bin/python", "runs/demo/summary.json", ".git/HEAD", ".pytest_cache/v", ".ruff_cache/x"]
    local_state += [".hypothesis/examples", "edgesync/__pycache__/cli.cpython-311.pyc", "edgesync.egg-info/PKG-INFO"]
    local_state += ["vtest.avi", "models/teacher.pt"]  # footage and weights are mounted, never baked in
    for path in local_state:
        assert _ignored(path, patterns), f".dockerignore lets {path} into the build context"
    for kept in ["pyproject.toml", "edgesync/cli.py", "configs/edge.yaml"]:
        assert not _ignored(kept, patterns), f".dockerignore drops {kept}, which the images need"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_image_runs_as_a_non_root_user_that_it_creates(name: str) -> None:
    df = parse_dockerfile(name)
    assert df.user, f"{name} never sets USER, so it runs as root"
    user = df.user.split(":")[0]
    assert user not in ("root", "0"), f"{name} ends as USER {df.user}"
    assert any(re.search(rf"useradd\b.*\b{re.escape(user)}\b", run) for run in df.runs), f"{name}: no useradd {user}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_image_takes_its_base_from_a_build_arg_with_a_default(name: str) -> None:
    df = parse_dockerfile(name)
    arg = re.fullmatch(r"\$\{(\w+)\}", df.from_raw)
    assert arg, f"{name}: FROM {df.from_raw} is not a build ARG"
    assert df.args.get(arg[1]), f"{name}: ARG {arg[1]} has no default base image"


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pin(requirement_name: str) -> str:
    for dep in _pyproject()["dependencies"]:
        match = re.fullmatch(rf"{requirement_name}==([\w.]+)", dep.replace(" ", ""))
        if match:
            return match[1]
    raise AssertionError(f"pyproject.toml does not pin {requirement_name}")


def test_cpu_edge_image_installs_the_torch_pins_of_pyproject_from_the_cpu_index() -> None:
    df = parse_dockerfile("edge.Dockerfile")
    assert df.base.startswith("python:3.11-slim"), df.base
    assert df.args["TORCH_VERSION"] == _pin("torch")
    assert df.args["TORCHVISION_VERSION"] == _pin("torchvision")
    assert df.args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    torch_step = next(i for i, run in enumerate(df.runs) if '"torch==${TORCH_VERSION}"' in run)
    assert '--index-url "${TORCH_INDEX_URL}"' in df.runs[torch_step]
    project_step = next(i for i, run in enumerate(df.runs) if "[assets]" in run and "pip install" in run)
    assert torch_step < project_step, "torch must come from the CPU index before `pip install .[assets]`"


def _requirements_program(run: str) -> tuple[str, list[str]]:
    """The `python3 -c PROGRAM EXTRAS...` that writes requirements.txt from pyproject.toml."""
    for command in run.split("&&"):
        if "requirements.txt" in command and "tomllib" in command:
            tokens = shlex.split(command.split(">")[0])
            return tokens[tokens.index("-c") + 1], tokens[tokens.index("-c") + 2 :]
    raise AssertionError("no requirements.txt step")


@pytest.mark.parametrize(("name", "extras"), [("edge-jetson.Dockerfile", []), ("cloud.Dockerfile", ["assets"])])
def test_gpu_images_install_pyproject_dependencies_but_keep_the_base_torch(name: str, extras: list[str]) -> None:
    df = parse_dockerfile(name)
    run = next(r for r in df.runs if "requirements.txt" in r)
    program, argv_extras = _requirements_program(run)
    assert argv_extras == extras
    produced = subprocess.run(
        [sys.executable, "-c", program, *argv_extras], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    project = _pyproject()
    expected = project["dependencies"] + [d for e in extras for d in project["optional-dependencies"][e]]
    expected = [d.replace(" ", "") for d in expected if not re.match(r"torch(vision)?\b", d)]
    assert produced == expected, "the image would install other dependencies than pyproject.toml lists"
    assert "torch==" in run and "-c constraints.txt" in run, "the base image's torch must be pinned by constraint"
    assert any(re.search(r"pip install (--\S+ \S+ )*--no-deps /tmp/edgesync-src\b", r) for r in df.runs)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_start_edgesync_in_exec_form_and_stop_it_with_sigint(name: str) -> None:
    df = parse_dockerfile(name)
    assert df.entrypoint == ["edgesync"], "the console script must be PID 1 to receive the stop signal"
    assert isinstance(df.cmd, list)
    assert df.stopsignal == "SIGINT", "SIGINT is the processes' clean shutdown (KeyboardInterrupt)"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_keep_ultralytics_offline_with_a_config_dir_in_the_users_home(name: str) -> None:
    df = parse_dockerfile(name)
    assert df.env["YOLO_OFFLINE"] == "1" and df.env["YOLO_AUTOINSTALL"] == "0"
    home = re.search(r"--home-dir (\S+)", next(r for r in df.runs if "useradd" in r))
    assert home and _is_under(df.env["YOLO_CONFIG_DIR"], home[1]), "YOLO_CONFIG_DIR must be writable by the user"
    assert _is_under(df.env["EDGESYNC_HOME"], home[1])


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_default_command_loads_a_valid_config_with_the_image_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = parse_dockerfile(name)
    cfg = _load_for(_default_argv(df), df.env, monkeypatch)
    chowned = " ".join(r for r in df.runs if "chown" in r)
    if name == "cloud.Dockerfile":
        listens = [cfg.listen, cfg.api.listen]
        assert cfg.api.enabled
    else:
        listens = [cfg.metrics_listen]
    hosts, ports = zip(*(address.rsplit(":", 1) for address in listens), strict=True)
    assert set(hosts) == {"0.0.0.0"}, f"a container must listen on every interface: {listens}"
    assert df.expose == [int(p) for p in ports], f"EXPOSE {df.expose} is not the listen ports {ports}"
    if name == "cloud.Dockerfile":
        assert _is_under(cfg.data_dir, CLOUD_DATA) and str(CLOUD_DATA) in chowned
    else:
        for path in (cfg.sink, cfg.queue.spill_dir, cfg.model_dir):
            assert _is_under(path, EDGE_DATA), f"{path} is outside the edge's data dir {EDGE_DATA}"
        assert str(EDGE_DATA) in chowned, "the user must own the edge's data dir"
        assert df.env["EDGESYNC_EDGE__SINK"] == str(cfg.sink), "the healthcheck watches EDGESYNC_EDGE__SINK"
    if name == "edge-jetson.Dockerfile":
        assert cfg.student.device.startswith("cuda")


def _config_references(argv: list[str]) -> list[str]:
    return [token for token in argv if token.startswith(f"{CONFIG_MOUNT}/")]


def _all_commands(images: dict[str, Dockerfile], compose: dict) -> dict[str, list[str]]:
    commands = {f"{name} CMD": _default_argv(df) for name, df in images.items()}
    commands.update({f"compose {name}": _service_argv(svc) for name, svc in _edgesync_services(compose).items()})
    return commands


def test_every_edgesync_command_in_images_and_compose_is_a_real_subcommand(
    images: dict[str, Dockerfile], compose: dict
) -> None:
    runner = CliRunner()
    for label, argv in _all_commands(images, compose).items():
        assert argv[0] == "edgesync", f"{label}: {argv}"
        result = runner.invoke(app, [*argv[1:], "--help"])
        assert result.exit_code == 0, f"{label}: `{shlex.join(argv)}` is not a valid edgesync command:\n{result.output}"
        assert "Usage" in result.output


def test_every_config_path_used_exists_in_configs_and_is_what_the_containers_see(
    images: dict[str, Dockerfile], compose: dict
) -> None:
    for label, argv in _all_commands(images, compose).items():
        assert "--config" in argv, f"{label} runs without --config"
        for reference in _config_references(argv):
            local = REPO / "configs" / PurePosixPath(reference).relative_to(CONFIG_MOUNT)
            assert local.is_file(), f"{label} uses {reference}, but {local.relative_to(REPO)} does not exist"
    for name, df in images.items():
        assert (["configs/"], f"{CONFIG_MOUNT}/") in df.copies, f"{name} must copy configs/ to {CONFIG_MOUNT}/"
    for name, service in _edgesync_services(compose).items():
        mounts = dict((target, source) for source, target in _mounts(service))
        assert (COMPOSE_FILE.parent / mounts[str(CONFIG_MOUNT)]).resolve() == REPO / "configs", name


def test_compose_build_contexts_dockerfiles_and_bind_sources_exist(compose: dict) -> None:
    for name, service in _edgesync_services(compose).items():
        context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
        assert context == REPO, f"{name}: the build context must be the repository root"
        assert (context / service["build"]["dockerfile"]).is_file(), f"{name}: {service['build']['dockerfile']}"
    for name, service in compose["services"].items():
        for source, _target in _mounts(service):
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: bind source {source} does not exist"


def _one_shot(compose: dict, name: str) -> bool:
    """A job others wait for to finish: no restart, and depended on as completed."""
    waits = [
        dep.get("condition")
        for svc in compose["services"].values()
        for dep_name, dep in (svc.get("depends_on") or {}).items()
        if dep_name == name
    ]
    return compose["services"][name].get("restart") == "no" and waits == ["service_completed_successfully"]


def _has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable", False) and bool(check.get("test"))
    return "build" in service and _service_image(service).healthcheck is not None


def test_every_long_running_compose_service_has_a_healthcheck_and_waits_for_healthy_dependencies(
    compose: dict,
) -> None:
    services = compose["services"]
    for name, service in services.items():
        if _one_shot(compose, name):
            continue
        assert _has_healthcheck(service), f"compose service {name} has no healthcheck, in compose or in its image"
        for dep_name, dep in (service.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if _one_shot(compose, dep_name) else "service_healthy"
            assert dep.get("condition") == wanted, f"{name} must wait for {dep_name}: {wanted}"


def test_redis_service_keeps_nothing_on_disk_and_is_checked_with_ping(compose: dict) -> None:
    redis_service = compose["services"]["redis"]
    assert redis_service["image"].startswith("redis:7")
    command = redis_service["command"]
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert redis_service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_compose_services_load_valid_configs_and_reach_each_other_on_the_published_port(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _edgesync_services(compose)
    configs = {name: _load_for(_service_argv(svc), _service_env(svc), monkeypatch) for name, svc in services.items()}

    cloud, cloud_cfg = services["cloud"], configs["cloud"]
    host, port = cloud_cfg.listen.rsplit(":", 1)
    api_host, api_port = cloud_cfg.api.listen.rsplit(":", 1)
    assert host == api_host == "0.0.0.0"
    assert _published_container_ports(cloud) == [int(port), int(api_port)] == _service_image(cloud).expose
    assert cloud_cfg.api.token == "a-real-token-0123456789", (
        "the dashboard's token comes from the host's EDGESYNC_API_TOKEN"
    )
    assert cloud_cfg.store.type == "redis"
    assert re.match(r"redis://([^:/]+)", cloud_cfg.store.url)[1] in compose["services"]

    edge_cfg = configs["edge"]
    edge_host, edge_port = edge_cfg.cloud.address.rsplit(":", 1)
    assert edge_host == "cloud" and edge_port == port, "the edge must dial the cloud service on its listen port"
    edge_mounts = dict((target, source) for source, target in _mounts(services["edge"]))
    assert edge_cfg.source.uri in edge_mounts, f"the edge reads {edge_cfg.source.uri}, which is not mounted"
    assert edge_cfg.source.loop is True
    metrics_port = int(edge_cfg.metrics_listen.rsplit(":", 1)[1])
    assert _published_container_ports(services["edge"]) == [metrics_port] == _service_image(services["edge"]).expose
    edge_volume = edge_mounts[str(EDGE_DATA)]
    assert edge_volume in compose["volumes"], "the edge's data must live in a named volume"
    for path in (edge_cfg.sink, edge_cfg.queue.spill_dir, edge_cfg.model_dir):
        assert _is_under(path, EDGE_DATA), f"edge {path} would be lost with the container"

    bootstrap_cfg = configs["bootstrap"]
    assert bootstrap_cfg.data_dir == cloud_cfg.data_dir, "bootstrap must register into the cloud's data dir"
    for name in ("bootstrap", "cloud"):
        mounts = dict((target, source) for source, target in _mounts(services[name]))
        assert mounts.get(str(cloud_cfg.data_dir)) in compose["volumes"], f"{name}: data dir is not the shared volume"
    bootstrap_argv = _service_argv(services["bootstrap"])
    bootstrap_mounts = dict((target, source) for source, target in _mounts(services["bootstrap"]))
    assert bootstrap_argv[bootstrap_argv.index("--video") + 1] in bootstrap_mounts


# ---------------------------------------------------------------- the healthchecks, executed


def _probe_result(argv: list[str], env: dict[str, str]) -> int:
    argv = [sys.executable if arg == "python3" else arg for arg in argv]
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, timeout=60).returncode


def test_cloud_healthcheck_passes_only_while_the_grpc_health_service_reports_serving(compose: dict) -> None:
    probe = parse_dockerfile("cloud.Dockerfile").healthcheck
    assert isinstance(probe, list)
    compose_probe = compose["services"]["cloud"]["healthcheck"]["test"]
    assert compose_probe == ["CMD", *probe], "compose and the image must probe the cloud the same way"

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {"EDGESYNC_CLOUD__LISTEN": f"0.0.0.0:{port}"}  # the probe dials 127.0.0.1 on the listen port
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert _probe_result(probe, env) == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _probe_result(probe, env) != 0
    finally:
        server.stop(0).wait()
    assert _probe_result(probe, env) != 0, "a cloud that is down must be unhealthy"


def test_edge_healthcheck_passes_while_frames_are_written_and_fails_when_they_stop(tmp_path: Path) -> None:
    probes = {parse_dockerfile(name).healthcheck for name in ("edge.Dockerfile", "edge-jetson.Dockerfile")}
    assert len(probes) == 1, "both edge images must judge health the same way"
    probe = probes.pop()
    assert isinstance(probe, str) and "$EDGESYNC_EDGE__SINK" in probe
    sink = tmp_path / "frames.jsonl"
    env = {"EDGESYNC_EDGE__SINK": str(sink)}
    shell = ["/bin/sh", "-c", probe]  # Docker runs the shell form of HEALTHCHECK CMD like this

    assert _probe_result(shell, env) != 0, "no frames yet must not count as healthy"
    sink.write_text('{"type":"frame"}\n')
    assert _probe_result(shell, env) == 0
    stale = time.time() - 120
    os.utime(sink, (stale, stale))
    assert _probe_result(shell, env) != 0, "a sink untouched for two minutes means the frame loop stopped"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_run_step_and_shell_healthcheck_is_valid_posix_shell(name: str) -> None:
    df = parse_dockerfile(name)
    steps = df.runs + ([df.healthcheck] if isinstance(df.healthcheck, str) else [])
    for step in steps:
        checked = subprocess.run(["/bin/sh", "-n", "-c", step], capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}: {step!r} is not valid sh: {checked.stderr}"
