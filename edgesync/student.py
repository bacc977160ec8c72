"""The student detector: an ultralytics YOLO with known classes, inference size and version.

Both processes use it: the edge predicts with it and hot-swaps it, the cloud validates and
fine-tunes it. Weights move as safetensors (edgesync.weights), never as pickle; the
architecture comes from ultralytics' own model YAMLs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgesync import ultralytics_env
from edgesync.errors import AssetError, EdgeSyncError, IntegrityError, InvalidInput
from edgesync.preprocess import preprocessed
from edgesync.types import Detection, ModelManifest, check_preprocess
from edgesync.weights import decode_state_dict, encode_state_dict, sha256_hex

DEFAULT_ARCH = "yolov8n.yaml"
ARCH_PATTERN = re.compile(r"^yolo[a-z0-9.-]*\.yaml$")
SCORE_FLOOR = 0.05  # boxes down to this confidence feed the sampler's uncertainty score
# serving settings when none are given (StudentModel and StudentModel.fits)
CONF, IOU, DEVICE = 0.25, 0.5, "cpu"


@dataclass
class Prediction:
    """The student's view of one frame."""

    detections: list[Detection]  # boxes at or above the student's confidence threshold
    scores: np.ndarray  # confidences of every box at or above SCORE_FLOOR


def check_arch(arch: str) -> str:
    if not ARCH_PATTERN.fullmatch(arch):
        raise InvalidInput(f"unknown model architecture {arch!r}: expected an ultralytics YAML like yolov8n.yaml")
    return arch


def build_detection_model(arch: str, num_classes: int):
    """A fresh ultralytics DetectionModel from its YAML, with num_classes outputs."""
    ultralytics_env.configure()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(check_arch(arch), nc=num_classes, verbose=False)


class StudentModel:
    """A YOLO detector plus the facts needed to serve, ship and retrain it."""

    def __init__(
        self,
        model: torch.nn.Module,
        class_names: list[str],
        imgsz: int,
        arch: str,
        version: int = 0,
        conf: float = CONF,
        iou: float = IOU,
        device: str = DEVICE,
        preprocess: str = "none",
    ) -> None:
        ultralytics_env.configure()
        from ultralytics.models.yolo.detect import DetectionPredictor

        self.arch = check_arch(arch)
        self.preprocess = check_preprocess(preprocess)  # done to every frame it sees (edgesync.preprocess)
        self.class_names = list(class_names)
        self.imgsz = imgsz
        self.version = version
        self.conf = conf
        self.iou = iou
        self.device = device
        model.names = dict(enumerate(self.class_names))
        model.eval()
        self.model = model
        # ultralytics' own predictor (what YOLO.predict uses) over this module: letterbox, NMS, scaling
        self._predictor = DetectionPredictor(
            overrides={
                "imgsz": imgsz,
                "conf": min(SCORE_FLOOR, conf),
                "iou": iou,
                "device": device,
                "verbose": False,
                "save": False,
            }
        )
        self._predictor.setup_model(model=model, verbose=False)

    # ------------------------------------------------------------ construction

    @classmethod
    def fresh(cls, class_names: list[str], imgsz: int, arch: str = DEFAULT_ARCH, **kw) -> StudentModel:
        """A randomly initialised student built from its YAML (no hub weights)."""
        return cls(build_detection_model(arch, len(class_names)), class_names, imgsz, arch, **kw)

    @classmethod
    def from_state(
        cls, state: dict, class_names: list[str], imgsz: int, arch: str, version: int = 0, **kw
    ) -> StudentModel:
        model = build_detection_model(arch, len(class_names))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InvalidInput(f"weights do not fit {arch} with {len(class_names)} classes: {exc}") from None
        return cls(model.float(), class_names, imgsz, arch, version=version, **kw)

    @classmethod
    def from_bytes(
        cls, manifest: ModelManifest, data: bytes, source: str = "model", spare: StudentModel | None = None, **kw
    ) -> StudentModel:
        """Verify data against the manifest's sha256, then build the model it describes.

        With a spare (a model nothing uses any more) that fits the manifest and kw, the weights
        are loaded into the spare's modules instead and the spare is returned: building a
        student is ultralytics' YAML parse, two stride passes and a deep copy to fuse (0.3-0.5 s
        of mostly Python, BENCHMARKS.md session 36), loading into a built one a few tensor
        copies. A spare that does not fit is left alone.
        """
        if len(data) != manifest.size_bytes:
            raise IntegrityError(f"{source}: {len(data)} bytes, manifest says {manifest.size_bytes}; truncated?")
        state = decode_state_dict(data, manifest.sha256, source)
        if spare is not None and spare.fits(manifest, **kw) and spare.load_weights(state, manifest, source):
            return spare
        return cls.from_state(
            state, list(manifest.class_names), manifest.imgsz, manifest.arch, version=manifest.version,
            preprocess=manifest.preprocess, **kw,
        )  # fmt: skip

    @classmethod
    def from_pt(cls, path: Path, imgsz: int, version: int = 0, **kw) -> StudentModel:
        """Load a user-supplied ultralytics .pt checkpoint (a trusted local file)."""
        path = Path(path)
        if not path.is_file():
            raise AssetError(f"student weights not found: {path}")
        ultralytics_env.configure()
        from ultralytics.nn.tasks import load_checkpoint

        model, _ = load_checkpoint(str(path))
        names = model.names if isinstance(model.names, dict) else dict(enumerate(model.names))
        arch = Path(str(model.yaml.get("yaml_file", DEFAULT_ARCH))).name
        if not ARCH_PATTERN.fullmatch(arch):
            arch = DEFAULT_ARCH
        return cls(model.float(), [names[i] for i in sorted(names)], imgsz, arch, version=version, **kw)

    def fits(self, manifest: ModelManifest, conf: float = CONF, iou: float = IOU, device: str = DEVICE) -> bool:
        """Whether the model a manifest describes (served with these settings) has this one's modules."""
        return (manifest.arch, list(manifest.class_names), manifest.imgsz, conf, iou, device) == (
            self.arch, self.class_names, self.imgsz, self.conf, self.iou, self.device,
        )  # fmt: skip

    def load_weights(self, state: dict[str, torch.Tensor], manifest: ModelManifest, source: str = "model") -> bool:
        """Become the manifest's model by loading state into this model's modules, in place.

        Only for a model nothing predicts with any more. Both copies are filled: the model the
        cloud trains and ships, and the predictor's copy with each convolution and its batch
        norm folded into one (what ultralytics' fuse() computes, here without rebuilding it).
        False, with this model left unusable, when the predictor's copy has a layer fuse() would
        rebuild otherwise (an architecture other than plain Conv-BN blocks): build afresh then.
        """
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            fit = f"{self.arch} with {len(self.class_names)} classes"
            raise InvalidInput(f"{source}: weights do not fit {fit}: {exc}") from None
        serving = self._predictor.model.model
        fused = fused_state(self.model, serving.state_dict().keys())
        if fused is None:
            return False
        serving.load_state_dict(fused, strict=True)  # copies into the existing tensors, memory layout kept
        self.version = manifest.version
        self.preprocess = check_preprocess(manifest.preprocess)
        return True

    # ------------------------------------------------------------ use

    def predict(self, frames: list[np.ndarray], seen: list[np.ndarray] | None = None) -> list[Prediction]:
        """Run the detector on BGR frames (preprocessed as the model was trained); boxes are in pixels
        of each frame. seen: the frames already preprocessed, if the caller has them."""
        results = self._predictor(source=preprocessed(frames, self.preprocess) if seen is None else seen, stream=False)
        out = []
        for r in results:
            data = r.boxes.data.cpu().numpy() if r.boxes is not None else np.zeros((0, 6), np.float32)
            scores = data[:, 4].astype(np.float32) if len(data) else np.zeros(0, np.float32)
            dets = [
                Detection(float(x1), float(y1), float(x2), float(y2), int(c), float(s))
                for x1, y1, x2, y2, s, c in data
                if s >= self.conf
            ]
            out.append(Prediction(dets, scores))
        return out

    def recalibrated(self, frames: list[np.ndarray], weight: float = 1.0, batch: int = 16) -> StudentModel:
        """A copy whose batch-norm statistics are re-estimated on frames, every other weight kept.

        Drift such as night, fog or rain shifts the statistics of every layer's activations; a
        detector whose normalisation still expects the clean scene's misreads the new one. Averaging
        the statistics over a few dozen frames of the new scene, as the student sees them at
        inference (letterboxed, unaugmented), is AdaBN (Li et al. 2016), which Schneider et al.
        (NeurIPS 2020) showed recovers much of the accuracy lost to image corruptions: it needs no
        labels and costs one forward pass per frame. It does not always help here: an ultralytics
        student's statistics come from mosaic- and colour-augmented batches, and re-estimating
        them even on clean frames cost the bootstrapped student 0.83 -> 0.65 mAP50, while a
        student fine-tuned on night frames went 0.10 -> 0.60 (BENCHMARKS.md, session 8). So
        held-out labels judge whether the result is better (cloud_trainer.worker).
        """
        model = build_detection_model(self.arch, len(self.class_names))
        model.load_state_dict(self.state_dict(), strict=True)
        frames = preprocessed(frames, self.preprocess)
        recalibrate_batchnorm(model.float().to(self.device), frames, self.imgsz, self.device, weight, batch)
        return StudentModel(
            model, self.class_names, self.imgsz, self.arch, version=self.version,
            conf=self.conf, iou=self.iou, device=self.device, preprocess=self.preprocess,
        )  # fmt: skip

    def interpolated(self, other: StudentModel, share: float) -> StudentModel:
        """A model whose every floating-point tensor (batch-norm statistics too) lies share of the way
        from this model's to other's; counters are other's. With self the model a fine-tune started
        from and other the fine-tuned one, this is WiSE-FT (Wortsman et al., CVPR 2022): the
        interpolation keeps much of the fine-tune's gain on its own data and more of the starting
        model's accuracy elsewhere, because a fine-tune on few frames moves far along directions
        those frames do not pin down."""
        if not 0.0 <= share <= 1.0:
            raise InvalidInput(f"interpolation share must be within 0..1, got {share}")
        if other.arch != self.arch or other.class_names != self.class_names:
            raise InvalidInput(
                f"cannot interpolate {self.arch} {self.class_names} with {other.arch} {other.class_names}"
            )
        if other.preprocess != self.preprocess:
            raise InvalidInput(
                f"cannot interpolate a model seeing {self.preprocess!r} frames with one seeing {other.preprocess!r}"
            )
        mine, theirs = self.state_dict(), other.state_dict()
        state = {
            name: torch.lerp(mine[name], tensor, share) if tensor.is_floating_point() else tensor
            for name, tensor in theirs.items()
        }
        return StudentModel.from_state(
            state, self.class_names, self.imgsz, self.arch, version=other.version,
            conf=self.conf, iou=self.iou, device=self.device, preprocess=self.preprocess,
        )  # fmt: skip

    def copy(self) -> StudentModel:
        """Another model with these weights and settings, sharing no tensors with this one."""
        return self.with_preprocess(self.preprocess)

    def with_preprocess(self, preprocess: str) -> StudentModel:
        """This model (the same weights, a copy) seeing frames preprocessed another way."""
        return StudentModel.from_state(
            self.state_dict(), self.class_names, self.imgsz, self.arch, version=self.version,
            conf=self.conf, iou=self.iou, device=self.device, preprocess=preprocess,
        )  # fmt: skip

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def encode(self) -> tuple[bytes, str]:
        """The weights as safetensors bytes and their sha256."""
        data = encode_state_dict(self.state_dict())
        return data, sha256_hex(data)

    def manifest(self, data: bytes, **fields) -> ModelManifest:
        """A manifest describing this model's encoded bytes."""
        return ModelManifest(
            version=fields.pop("version", self.version),
            sha256=sha256_hex(data),
            size_bytes=len(data),
            arch=self.arch,
            class_names=tuple(self.class_names),
            imgsz=self.imgsz,
            parent=fields.pop("parent", 0),
            preprocess=fields.pop("preprocess", self.preprocess),
            **fields,
        )

    def warmup(self) -> None:
        """One prediction on a blank frame so the first real frame is not slow."""
        self.predict([np.zeros((self.imgsz, self.imgsz, 3), np.uint8)])


def fused_state(model: torch.nn.Module, keys) -> dict[str, torch.Tensor] | None:
    """The tensors named keys of model fused as ultralytics' fuse() does, computed from the unfused
    model without changing it. None if model has a layer fuse() rebuilds other than by folding a
    batch norm into its convolution, or a key is neither a folded convolution's nor model's own."""
    ultralytics_env.configure()
    from torch.nn.utils.fusion import fuse_conv_bn_weights
    from ultralytics.nn.modules import Conv, Detect, DWConv

    own = model.state_dict()
    fused: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            fusable = any(hasattr(m, attr) for attr in ("fuse", "fuse_convs", "forward_fuse"))
            if not fusable or m is model or type(m) is Detect:  # Detect's fuse() only drops a branch: keys say
                continue
            if type(m) not in (Conv, DWConv):  # fuse() would rebuild it another way (RepConv, Conv2, ...)
                return None
            if isinstance(getattr(m, "bn", None), torch.nn.BatchNorm2d):
                bn = m.bn
                weight, bias = fuse_conv_bn_weights(
                    m.conv.weight, m.conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
                )
                fused[f"{name}.conv.weight"], fused[f"{name}.conv.bias"] = weight, bias
    out = {}
    for key in keys:
        tensor = fused.get(key, own.get(key))
        if tensor is None:
            return None
        out[key] = tensor
    return out


def batchnorm_layers(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer of model, in module order."""
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(
    model: torch.nn.Module,
    frames: list[np.ndarray],
    imgsz: int,
    device: str = "cpu",
    weight: float = 1.0,
    batch: int = 16,
) -> None:
    """Replace model's batch-norm running statistics, in place, by their average over frames
    (BGR, preprocessed as predict() does); see StudentModel.recalibrated."""
    if not frames:
        raise ValueError("recalibrating batch-norm statistics needs at least one frame")
    ultralytics_env.configure()
    from ultralytics.data.augment import LetterBox

    norms = batchnorm_layers(model)
    stride = max(32, int(model.stride.max())) if hasattr(model, "stride") else 32
    # the rectangular letterbox predict() uses; frames of several sizes are padded to squares
    letterbox = LetterBox((imgsz, imgsz), auto=len({f.shape for f in frames}) == 1, stride=stride)
    was_training = model.training
    momenta = [m.momentum for m in norms]
    old = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch, not an exponential one
        m.train()
    try:
        with torch.no_grad():
            for i in range(0, len(frames), batch):
                images = np.stack([letterbox(image=f) for f in frames[i : i + batch]])
                x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).flip(1).float().div_(255)
                model(x)
    finally:
        for m, momentum, (mean, var, tracked) in zip(norms, momenta, old, strict=True):
            m.momentum = momentum
            m.running_mean.mul_(weight).add_(mean, alpha=1 - weight)
            m.running_var.mul_(weight).add_(var, alpha=1 - weight)
            m.num_batches_tracked.copy_(tracked)  # only the statistics change
        model.train(was_training)


def load_safetensors_model(path: Path, **kw) -> StudentModel:
    """Load weights.safetensors with its manifest (same stem .json, or manifest.json beside it)."""
    path = Path(path)
    candidates = [path.with_suffix(".json"), path.parent / "manifest.json"]
    manifest_path = next((p for p in candidates if p.exists()), None)
    if manifest_path is None:
        raise EdgeSyncError(f"{path}: no manifest beside it (looked for {', '.join(map(str, candidates))})")
    manifest = ModelManifest.from_json(json.loads(manifest_path.read_text()))
    return StudentModel.from_bytes(manifest, path.read_bytes(), source=str(path), **kw)
