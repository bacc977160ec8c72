from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Detection(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2", "class_id", "score")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    score: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ..., class_id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("sample_id", "edge_id", "capture_time", "model_version", "jpeg", "detections", "score", "frame_index", "scene_start", "audit")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    SCENE_START_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    edge_id: str
    capture_time: float
    model_version: int
    jpeg: bytes
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    score: float
    frame_index: int
    scene_start: float
    audit: bool
    def __init__(self, sample_id: _Optional[str] = ..., edge_id: _Optional[str] = ..., capture_time: _Optional[float] = ..., model_version: _Optional[int] = ..., jpeg: _Optional[bytes] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., score: _Optional[float] = ..., frame_index: _Optional[int] = ..., scene_start: _Optional[float] = ..., audit: _Optional[bool] = ...) -> None: ...

class SampleAck(_message.Message):
    __slots__ = ("sample_id", "accepted", "error", "retry")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    accepted: bool
    error: str
    retry: bool
    def __init__(self, sample_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., error: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("edge_id", "model_version", "class_names", "description")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    model_version: int
    class_names: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, edge_id: _Optional[str] = ..., model_version: _Optional[int] = ..., class_names: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("latest_model_version", "heartbeat_interval_s")
    LATEST_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    latest_model_version: int
    heartbeat_interval_s: float
    def __init__(self, latest_model_version: _Optional[int] = ..., heartbeat_interval_s: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("edge_id", "model_version", "frames", "queue_depth", "confidence_proxy", "uplink_bytes", "downlink_bytes")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_PROXY_FIELD_NUMBER: _ClassVar[int]
    UPLINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    DOWNLINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    model_version: int
    frames: int
    queue_depth: int
    confidence_proxy: float
    uplink_bytes: int
    downlink_bytes: int
    def __init__(self, edge_id: _Optional[str] = ..., model_version: _Optional[int] = ..., frames: _Optional[int] = ..., queue_depth: _Optional[int] = ..., confidence_proxy: _Optional[float] = ..., uplink_bytes: _Optional[int] = ..., downlink_bytes: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("latest_model_version",)
    LATEST_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    latest_model_version: int
    def __init__(self, latest_model_version: _Optional[int] = ...) -> None: ...

class SceneChange(_message.Message):
    __slots__ = ("edge_id", "time", "previous_scene_start", "previous_signature", "signature", "model_version", "confidence")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SCENE_START_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    time: float
    previous_scene_start: float
    previous_signature: _containers.RepeatedScalarFieldContainer[float]
    signature: _containers.RepeatedScalarFieldContainer[float]
    model_version: int
    confidence: float
    def __init__(self, edge_id: _Optional[str] = ..., time: _Optional[float] = ..., previous_scene_start: _Optional[float] = ..., previous_signature: _Optional[_Iterable[float]] = ..., signature: _Optional[_Iterable[float]] = ..., model_version: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class SceneChangeResponse(_message.Message):
    __slots__ = ("specialist_version",)
    SPECIALIST_VERSION_FIELD_NUMBER: _ClassVar[int]
    specialist_version: int
    def __init__(self, specialist_version: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("edge_id", "have_version", "held")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    have_version: int
    held: _containers.RepeatedCompositeFieldContainer[HeldModel]
    def __init__(self, edge_id: _Optional[str] = ..., have_version: _Optional[int] = ..., held: _Optional[_Iterable[_Union[HeldModel, _Mapping]]] = ...) -> None: ...

class HeldModel(_message.Message):
    __slots__ = ("version", "sha256")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    version: int
    sha256: str
    def __init__(self, version: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ModelManifest(_message.Message):
    __slots__ = ("version", "parent", "sha256", "size_bytes", "arch", "class_names", "imgsz", "created", "metrics", "trained_until", "payload", "signature", "preprocess")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    IMGSZ_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_FIELD_NUMBER: _ClassVar[int]
    version: int
    parent: int
    sha256: str
    size_bytes: int
    arch: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    imgsz: int
    created: float
    metrics: _containers.ScalarMap[str, float]
    trained_until: float
    payload: PayloadInfo
    signature: str
    preprocess: str
    def __init__(self, version: _Optional[int] = ..., parent: _Optional[int] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., arch: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., imgsz: _Optional[int] = ..., created: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., trained_until: _Optional[float] = ..., payload: _Optional[_Union[PayloadInfo, _Mapping]] = ..., signature: _Optional[str] = ..., preprocess: _Optional[str] = ...) -> None: ...

class PayloadInfo(_message.Message):
    __slots__ = ("encoding", "sparse_fraction", "compression", "base_version", "base_sha256", "size_bytes")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    encoding: str
    sparse_fraction: float
    compression: str
    base_version: int
    base_sha256: str
    size_bytes: int
    def __init__(self, encoding: _Optional[str] = ..., sparse_fraction: _Optional[float] = ..., compression: _Optional[str] = ..., base_version: _Optional[int] = ..., base_sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("manifest", "data", "last")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    manifest: ModelManifest
    data: bytes
    last: bool
    def __init__(self, manifest: _Optional[_Union[ModelManifest, _Mapping]] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...
