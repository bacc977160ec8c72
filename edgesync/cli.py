"""The `edgesync` command: one console script, a subcommand per job.

This module is the composition root: it loads config once and hands it to the process it
starts. Process packages (edge_agent, cloud_trainer) are imported inside their commands, so
`edgesync edge` never loads the cloud and the core never depends on either at import time.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from edgesync.errors import EdgeSyncError

app = typer.Typer(
    help="EdgeSync: keep an edge detector accurate on drifting video by retraining it in the cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
edge_app = typer.Typer(help="The edge agent: detect on a stream, upload the frames worth learning from.")
cloud_app = typer.Typer(help="The cloud trainer: label uploads with the teacher, retrain, push models.")
bench_app = typer.Typer(
    help="Benchmarks: strategies under drift in virtual time (default), or the edge frame loop (`bench edge`).",
    invoke_without_command=True,
)
app.add_typer(edge_app, name="edge")
app.add_typer(cloud_app, name="cloud")
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _logging(verbose: bool) -> None:
    """Rich output on a terminal; plain timestamped lines when logs go to a file or a container."""
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("ultralytics", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@edge_app.command("run")
def edge_run(
    config: ConfigOption = None,
    cloud: Annotated[str | None, typer.Option(help="Cloud address host:port (overrides cloud.address).")] = None,
    video: Annotated[str | None, typer.Option(help="File, rtsp:// or http:// URL, or camera index.")] = None,
    drift: Annotated[Path | None, typer.Option(help="Drift schedule YAML applied to each frame.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    drain_s: Annotated[float, typer.Option(help="At the end, wait this long for queued uploads.")] = 10.0,
    verbose: Verbose = False,
) -> None:
    """Run the edge agent on a stream until it ends (Ctrl-C stops it; queued samples stay on disk)."""
    _logging(verbose)
    from edgesync.config import load_edge_config

    cfg = load_edge_config(config)  # before the heavy imports, so a config error is instant
    from edge_agent.agent import EdgeAgent

    updates: dict = {}
    if cloud:
        updates["cloud"] = cfg.cloud.model_copy(update={"address": cloud})
    source = {k: v for k, v in {"uri": video, "drift": drift, "max_frames": max_frames}.items() if v is not None}
    if source:
        updates["source"] = cfg.source.model_copy(update=source)
    cfg = cfg.model_copy(update=updates)
    agent = EdgeAgent(cfg)
    try:
        stats = agent.run(drain_s=drain_s)
    except KeyboardInterrupt:
        agent.stop()
        console.print("stopped; pending samples are kept in the spill directory")
        return
    console.print(
        f"edge {cfg.edge_id}: {stats.frames} frames, {stats.samples_accepted} samples queued, "
        f"{stats.swaps} model swaps, {agent.spool.depth} still pending"
    )


@cloud_app.command("serve")
def cloud_serve(config: ConfigOption = None, verbose: Verbose = False) -> None:
    """Serve gRPC, label uploads, and run the training manager and workers until interrupted."""
    _logging(verbose)
    from edgesync.config import load_cloud_config

    cfg = load_cloud_config(config)
    from cloud_trainer.app import CloudTrainer

    trainer = CloudTrainer(cfg)
    port = trainer.start()
    console.print(f"cloud trainer listening on {cfg.listen.rsplit(':', 1)[0]}:{port} (store: {cfg.store.type})")
    if trainer.api is not None:
        console.print(f"dashboard and REST API: {trainer.dashboard_url()}")
    try:
        trainer.wait()
    except KeyboardInterrupt:
        trainer.stop()


WORKER_HELP = (
    "Train jobs from the shared Redis queue until stopped: run one per GPU, on any number of machines.\n\n"
    "Needs store.type redis (configs/cloud-redis.yaml) and data_dir on storage that every worker and "
    "front end shares (NFS, a shared volume): the model registry and the per-job checkpoints live there.\n\n"
    "A worker that dies mid-job has its job taken over by another worker once its lease (lease_s) lapses, "
    "resumed from the last epoch's checkpoint. SIGTERM or Ctrl-C finish the job under way first; a second "
    "Ctrl-C quits at once (another worker then takes the job over). Front ends run `edgesync cloud serve` "
    "with workers: 0."
)


@cloud_app.command("worker", help=WORKER_HELP)
def cloud_worker(
    config: ConfigOption = None,
    worker_id: Annotated[
        str | None, typer.Option(help="Name in the job stream's consumer group (default: host name and pid).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Training device, e.g. cuda:1 (overrides training.device).")] = (
        None
    ),
    verbose: Verbose = False,
) -> None:
    """Train jobs from the shared Redis queue (see WORKER_HELP)."""
    _logging(verbose)
    import signal
    import threading

    from edgesync.config import RedisStoreConfig, load_cloud_config
    from edgesync.errors import ConfigError

    cfg = load_cloud_config(config)
    if not isinstance(cfg.store, RedisStoreConfig):
        raise ConfigError(
            f"{config or 'the default config'}: `edgesync cloud worker` takes jobs from a shared Redis; "
            "set store.type: redis (see configs/cloud-redis.yaml), or train in-process with "
            "`edgesync cloud serve` and workers >= 1"
        )
    if device:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"device": device})})
    from cloud_trainer.registry import ModelRegistry
    from cloud_trainer.state import build_store
    from cloud_trainer.worker import TrainingWorker, default_worker_id

    store = build_store(cfg.store)
    registry = ModelRegistry.for_cloud(cfg)
    worker = TrainingWorker.from_config(cfg, store, registry, worker_id or default_worker_id())
    stop = threading.Event()

    def finish_then_stop(signum: int, _frame: object) -> None:
        console.print("stopping after the job under way (Ctrl-C again to quit now)")
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, finish_then_stop)
    signal.signal(signal.SIGINT, finish_then_stop)
    console.print(f"worker {worker.worker_id}: jobs from {cfg.store.url}, registry in {registry.root}")
    try:
        worker.run(stop)
    except KeyboardInterrupt:
        console.print("stopped mid-job; another worker takes it over when its lease lapses")
    finally:
        store.close()


KEYS_HELP = (
    "Make the Ed25519 key pair that signs model manifests.\n\n"
    "Writes manifest-signing.key (the cloud's; security.signing_key, readable by its owner only) and "
    "manifest-signing.pub (every edge's; security.verify_key). Edges with a verify key run only models "
    "whose manifest verifies and keep their current model otherwise."
)


@app.command(help=KEYS_HELP)
def keys(
    out: Annotated[Path, typer.Option(help="Directory to write the two key files to.")] = Path("keys"),
) -> None:
    from edgesync.signing import generate_keypair

    private, public = generate_keypair(out)  # an EdgeSyncError becomes one line from main()
    console.print(f"signing key (cloud): {private}\nverify key (edges): {public}")


CERTS_HELP = (
    "Make a lab certificate authority and a server certificate for TLS on gRPC and the REST API.\n\n"
    "Writes ca.pem (what edges and API clients trust: the edge's cloud.tls_ca, `edgesync status --ca`), "
    "server.pem and server.key (the cloud's security.tls_cert and tls_key) for every --host name or address "
    "the cloud is reached by. Bring your own certificates in production."
)


@app.command(help=CERTS_HELP)
def certs(
    host: Annotated[list[str], typer.Option(help="A DNS name or IP address of the cloud; repeat for several.")],
    out: Annotated[Path, typer.Option(help="Directory to write ca.pem, server.pem and server.key to.")] = Path("certs"),
) -> None:
    from edgesync.tls import make_lab_certificates

    ca, cert, key = make_lab_certificates(out, host)  # an EdgeSyncError becomes one line from main()
    console.print(f"CA (edges, clients): {ca}\ncertificate: {cert}\nkey (cloud only): {key}")


EDGE_TOKEN_HELP = (
    "Print the token an edge needs when the cloud sets security.edge_secret.\n\n"
    "The token is derived from the cloud's secret and the edge id, so each edge's differs and none "
    "needs storing on the cloud. Put it in the edge's cloud.token (or EDGESYNC_EDGE__CLOUD__TOKEN). "
    "Revoke an edge with POST /api/v1/edges/EDGE_ID/revoke."
)


@app.command("edge-token", help=EDGE_TOKEN_HELP)
def edge_token_cmd(
    edge_id: Annotated[str, typer.Argument(help="The edge's id, as in its edge_id.")],
    config: ConfigOption = None,
) -> None:
    from edgesync.config import load_cloud_config
    from edgesync.credentials import edge_token
    from edgesync.types import check_edge_id

    cfg = load_cloud_config(config)
    if not cfg.security.edge_secret:
        console.print("[red]error:[/red] the cloud config sets no security.edge_secret: edges need no token")
        raise typer.Exit(1)
    print(edge_token(cfg.security.edge_secret, check_edge_id(edge_id)))


STATUS_HELP = (
    "Print the fleet as a table, from a running cloud's REST API.\n\n"
    "The token is the one the cloud printed with its dashboard address (or api.token in its config); "
    "pass it with --token or the EDGESYNC_API_TOKEN environment variable."
)


@app.command(help=STATUS_HELP)
def status(
    url: Annotated[
        str, typer.Option(help="The cloud's REST API.", envvar="EDGESYNC_API_URL")
    ] = "http://127.0.0.1:8080",
    token: Annotated[str | None, typer.Option(help="API token.", envvar="EDGESYNC_API_TOKEN")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")] = False,
    ca: Annotated[Path | None, typer.Option(help="CA certificate to check an https:// cloud against.")] = None,
) -> None:
    from edgesync.fleet_status import StatusError, fetch_fleet, fleet_table

    if not token:
        raise typer.BadParameter("give the API token with --token or EDGESYNC_API_TOKEN", param_hint="--token")
    try:
        fleet = fetch_fleet(url, token, ca=ca)
    except StatusError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(fleet, indent=2))
    else:
        console.print(fleet_table(fleet))


@app.command()
def bootstrap(
    video: Annotated[str, typer.Option(help="Video file or asset name (vtest.avi) whose first minutes are clean.")],
    config: ConfigOption = None,
    seconds: Annotated[float, typer.Option(help="Train on frames from the first this-many seconds.")] = 60.0,
    frames: Annotated[int, typer.Option(help="Frames to take, evenly spaced.")] = 240,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
    imgsz: Annotated[int, typer.Option(help="Student input size in pixels.")] = 320,
    arch: Annotated[str, typer.Option(help="ultralytics model YAML of the student.")] = "yolov8n.yaml",
    force: Annotated[bool, typer.Option(help="Train even if a base model is registered.")] = False,
    verbose: Verbose = False,
) -> None:
    """Train the first student on teacher labels of a video's first clean minutes; register it as version 1."""
    _logging(verbose)
    from rich.progress import Progress

    from cloud_trainer.bootstrap import BootstrapSettings, bootstrap_student
    from cloud_trainer.registry import ModelRegistry
    from edgesync.assets import resolve_video
    from edgesync.config import load_cloud_config
    from edgesync.teachers import build_teacher

    cfg = load_cloud_config(config)
    registry = ModelRegistry.for_cloud(cfg)
    existing = registry.latest(None)
    if existing is not None and not force:
        console.print(f"base model v{existing.version} already registered in {registry.root}; use --force to retrain")
        return
    settings = BootstrapSettings(seconds=seconds, frames=frames, epochs=epochs, imgsz=imgsz, arch=arch)
    path = resolve_video(video)
    teacher = build_teacher(cfg.teacher)
    with Progress(console=console) as progress:
        labelling = progress.add_task("teacher labels", total=frames)
        training = progress.add_task("training", total=epochs)
        manifest = bootstrap_student(
            path,
            teacher,
            registry,
            cfg.training,
            settings,
            on_label=lambda n: progress.advance(labelling, n),
            on_epoch=lambda e, total: progress.update(training, completed=e, total=total),
        )
    console.print(
        f"registered base v{manifest.version}: mAP50 {manifest.metrics.get('map50', 0):.3f} on held-out frames, "
        f"{manifest.size_bytes / 1e6:.1f} MB, in {registry.root}"
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the run's files and summary.json go.")] = Path("runs/demo"),
    drift: Annotated[Path, typer.Option(help="Drift schedule for the stream.")] = Path("configs/drift/demo.yaml"),
    edge_config: Annotated[Path, typer.Option(help="Edge config.")] = Path("configs/demo/edge.yaml"),
    cloud_config: Annotated[Path, typer.Option(help="Cloud config.")] = Path("configs/demo/cloud.yaml"),
    window_s: Annotated[float, typer.Option(help="Accuracy window in stream seconds.")] = 15.0,
    verbose: Verbose = False,
) -> None:
    """Bootstrap if needed, start a cloud and an edge on localhost, stream vtest.avi through drift, report accuracy."""
    _logging(verbose)
    from edgesync.demo import DemoSettings, run_demo

    run_demo(DemoSettings(out=out, drift=drift, edge_config=edge_config, cloud_config=cloud_config, window_s=window_s))


@bench_app.callback()
def bench(
    ctx: typer.Context,
    video: Annotated[str, typer.Option(help="Video file or asset name (vtest.avi).")] = "vtest.avi",
    drift: Annotated[Path, typer.Option(help="Drift schedule YAML.")] = Path("configs/drift/dev.yaml"),
    strategies: Annotated[
        str,
        typer.Option(
            help="Comma-separated, from static, static-levels (the same student seeing frames through auto "
            "levels), uniform, shoggoth, edgesync (change points and zoo), cpd (edgesync "
            "without the zoo), edgesync-nocpd, edgesync-oracle (true scene changes), edgesync-noburst (no upload "
            "burst after a change), edgesync-gentle, edgesync-short, edgesync-profiled and edgesync-epochs "
            "(fine-tune recipes; the job profiler choosing them), edgesync-fixed (held-out frames fixed for "
            "good), edgesync-recal (batch-norm recalibration), edgesync-last, edgesync-lr and edgesync-lr003, "
            "distill and distill-gen (distillation from the teacher's features); with --cameras, fifo, fair and "
            "manager (how the shared worker orders the cameras' jobs), the manager's orders pinned by name "
            "(manager-gain, the default until session 32; manager-smith, manager-rate, manager-smith-rate, the "
            "default; manager-eager, manager-smith-eager, manager-delivers) and manager-patience, fifo-patience, "
            "fair-patience (jobs also stop early). Append -noaudit to edgesync, fifo, fair or manager to validate"
            " on frames picked on merit instead of audit frames drawn at random (sampler.audit_share 0), "
            "-backtrack for step control (training.backtrack), -stem to freeze the stem (training.freeze 2), "
            "-stalebn to leave batch-norm statistics to trail the optimizer steps (training.bn_follows_steps "
            "false), -lr01-nb64 for the fine-tunes' steps before session 28 (lr0 0.01, a step every 64 images), "
            "-cv to judge each job's kept epoch by its cross-validated held-out score (training.judge), or "
            "-nolevels for models that never see frames through auto levels (training.preprocess none only, the "
            "default before session 34). Append"
            " +ENCODING (full, fp16-delta, int8-delta), then optionally @FRACTION (sparse) and :raw "
            "(uncompressed), to send that strategy's updates another way, e.g. edgesync+int8-delta@0.1 (default: "
            "the config's downlink section, fp16-delta with zstd)."
        ),
    ] = ("static,uniform,shoggoth,edgesync"),
    seed: Annotated[
        int,
        typer.Option(
            help="Seeds the drift noise and training (shuffling, augmentation, replay); "
            "the same seed gives the same numbers."
        ),
    ] = 0,
    out: Annotated[Path, typer.Option(help="Writes results.json, results.md and accuracy.png here.")] = Path(
        "runs/bench"
    ),
    student: Annotated[Path | None, typer.Option(help="Start from this model instead of bootstrapping.")] = None,
    config: ConfigOption = None,
    gpu_speedup: Annotated[float, typer.Option(help="Cloud GPU speed over this CPU, for virtual costs.")] = 1.0,
    uplink_kbps: Annotated[float, typer.Option(help="Uplink bandwidth, kbit/s.")] = 2000.0,
    downlink_kbps: Annotated[float, typer.Option(help="Downlink bandwidth, kbit/s.")] = 10000.0,
    rtt_ms: Annotated[float, typer.Option(help="Round-trip time, ms.")] = 50.0,
    train_budget_share: Annotated[
        float, typer.Option(help="Training budget: GPU-seconds (at speed-up 1) per stream second.")
    ] = 0.4,
    max_samples_per_s: Annotated[float, typer.Option(help="Upload budget per camera: samples/s.")] = 1.0,
    max_bytes_per_s: Annotated[float, typer.Option(help="Upload budget per camera: bytes/s.")] = 60_000.0,
    max_side: Annotated[int, typer.Option(help="Uploads are downscaled to this longest side (px).")] = 640,
    max_seconds: Annotated[float | None, typer.Option(help="Stop the stream after this many seconds.")] = None,
    cameras: Annotated[
        Path | None,
        typer.Option(
            help="Several cameras sharing one cloud and one training worker (configs/bench/four-cameras.yaml): "
            "each with its own drift schedule, seed and start in the video. Replaces --video and --drift; "
            "results give the mean over cameras and per_camera."
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Strategies run at a time, each in its own process with an equal share of the cores "
            "(about 4 GB of memory each on the dev schedule); the numbers are the same as with 1.",
        ),
    ] = 1,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep the strategies that --out's results.json already holds (results.json is rewritten "
            "as each strategy finishes) and run only the rest; refused when that file was written for "
            "another stream, student, config or budgets. Resume on the same commit.",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Replay a video through a drift schedule in virtual time and compare retraining strategies."""
    if ctx.invoked_subcommand is not None:
        return
    _logging(verbose)
    for noisy in ("cloud_trainer", "edgesync.teachers", "edgesync.drift"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    from edgesync.config import load_cloud_config
    from edgesync_bench.runner import BenchRequest, run_bench

    cloud = load_cloud_config(config) if config is not None else None
    request = BenchRequest(
        video=video,
        drift=drift,
        strategies=[s.strip() for s in strategies.split(",") if s.strip()],
        seed=seed,
        out=out,
        student=student,
        cloud=cloud,
        gpu_speedup=gpu_speedup,
        uplink_kbit_s=uplink_kbps,
        downlink_kbit_s=downlink_kbps,
        rtt_ms=rtt_ms,
        train_budget_share=train_budget_share,
        max_samples_per_s=max_samples_per_s,
        max_bytes_per_s=max_bytes_per_s,
        max_side=max_side,
        max_seconds=max_seconds,
        cameras=cameras,
        jobs=jobs,
        resume=resume,
    )
    results = run_bench(request)
    console.print((out / "results.md").read_text())
    console.print(f"results in {out} ({results['wall_s']:.0f} s)")


@bench_app.command("load")
def bench_load(
    edges: Annotated[int, typer.Option(help="Simulated edges uploading at once.", min=1)] = 20,
    seconds: Annotated[float, typer.Option(help="How long they upload.", min=1)] = 30.0,
    rate: Annotated[
        float | None, typer.Option(help="Samples/s per edge (default: as fast as the cloud acknowledges).")
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Use a Redis store at this URL (default: in-process).")] = None,
    out: Annotated[Path, typer.Option(help="Writes load.json here.")] = Path("runs/bench/load"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Many edges uploading at once to one cloud on loopback: samples/s stored and ack latency."""
    from edgesync.config import RedisStoreConfig
    from edgesync_bench.load import run_load

    store = RedisStoreConfig(url=redis_url, prefix=f"edgesync-load-{int(time.time())}") if redis_url else None
    with console.status(f"{edges} edges uploading for {seconds:.0f} s"):
        figures = run_load(edges, seconds, store=store, data_dir=out / "cloud", rate=rate)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(figures, indent=2))
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    console.print(
        f"{figures['edges']} edges, {figures['seconds']:.0f} s, store {figures['store']}: "
        f"{figures['samples_per_s']} samples/s stored ({figures['samples_accepted']} in all), ack latency "
        f"median {figures['ack_latency_ms_median']} ms, p99 {figures['ack_latency_ms_p99']} ms; "
        f"held back {figures['held_back']}, refused {figures['refused']}, errors {len(figures['errors'])}"
    )


@bench_app.command("edge")
def bench_edge(
    video: Annotated[str, typer.Option(help="Video file or asset name (vtest.avi).")] = "vtest.avi",
    frames: Annotated[int, typer.Option(help="Frames per pass (the first N of the video).", min=1)] = 300,
    swaps: Annotated[int, typer.Option(help="Model updates swapped in during each swap pass.", min=0)] = 3,
    student: Annotated[
        Path | None, typer.Option(help="Student weights (.safetensors with manifest, or .pt); default: fresh yolov8n.")
    ] = None,
    imgsz: Annotated[int, typer.Option(help="Inference size of a fresh or .pt student.", min=32)] = 320,
    repeats: Annotated[int, typer.Option(help="Interleaved repeats of each pass; medians are reported.", min=1)] = 2,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="How the agent's model sees frames: none or auto-levels (default: as the student's manifest says). "
            "The bare loop predicts on frames as they come, so the agent pays for it."
        ),
    ] = None,
    spares: Annotated[
        int | None,
        typer.Option(
            help="Spare models the agent keeps for updates to be loaded into (default: student.spares' default); "
            "0 builds each update afresh beside the frame loop.",
            min=0,
        ),
    ] = None,
    read_ahead: Annotated[
        int | None,
        typer.Option(
            help="Frames the agent's source decodes ahead on a reader thread (default: source.read_ahead's default); "
            "0 decodes in the loop, as the bare loop does.",
            min=0,
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write edge.json here.")] = None,
    verbose: Verbose = False,
) -> None:
    """Time the edge agent's frame loop (decode, preprocess, detect, sample, queue) against a bare
    predict loop, and its per-frame latency while models are swapped in."""
    _logging(verbose)
    from edgesync_bench.edge_loop import run_edge_bench, summary_table

    result = run_edge_bench(
        video=video,
        frames=frames,
        swaps=swaps,
        student=student,
        imgsz=imgsz,
        repeats=repeats,
        out=out,
        preprocess=preprocess,
        spares=spares,
        read_ahead=read_ahead,
    )
    console.print(summary_table(result))
    if out is not None:
        console.print(f"results in {out / 'edge.json'}")


@bench_app.command("changepoints")
def bench_changepoints(
    video: Annotated[str, typer.Option(help="Video file or asset name (vtest.avi).")] = "vtest.avi",
    drift: Annotated[Path, typer.Option(help="Drift schedule YAML; its segment starts are the truth.")] = Path(
        "configs/drift/dev.yaml"
    ),
    truth: Annotated[
        Path | None, typer.Option(help="File of true change times (seconds, one per line) instead of the schedule's.")
    ] = None,
    tolerance_s: Annotated[float, typer.Option(help="A detection this soon after a boundary is a hit.", min=0)] = 5.0,
    student: Annotated[Path | None, typer.Option(help="Student weights; default: the bench's own.")] = None,
    seed: Annotated[int, typer.Option(help="Drift noise seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write changepoints.json here.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Edge config YAML whose `changepoint` section to use.")
    ] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop the stream after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    verbose: Verbose = False,
) -> None:
    """Precision, recall, F1 and delay of the edge's change-point detector against known scene changes."""
    _logging(verbose)
    from edgesync.config import load_edge_config
    from edgesync_bench.changepoints import ChangePointRequest, print_summary, run_changepoints

    detector = load_edge_config(config).changepoint if config is not None else None
    result = run_changepoints(
        ChangePointRequest(
            video=video,
            drift=drift,
            truth=truth,
            tolerance_s=tolerance_s,
            student=student,
            seed=seed,
            out=out,
            detector=detector,
            max_seconds=max_seconds,
        )
    )
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)


def main() -> None:
    """Entry point: EdgeSync errors become one clear line and exit code 1, never a traceback."""
    try:
        app()
    except EdgeSyncError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)  # unwrapped, literal
        sys.exit(1)


if __name__ == "__main__":
    main()
