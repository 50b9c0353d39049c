from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("raw", "scaled")
    RAW_FIELD_NUMBER: _ClassVar[int]
    SCALED_FIELD_NUMBER: _ClassVar[int]
    raw: bytes
    scaled: ScaledPixels
    def __init__(self, raw: _Optional[bytes] = ..., scaled: _Optional[_Union[ScaledPixels, _Mapping]] = ...) -> None: ...

class ScaledPixels(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predicted_label", "probabilities", "model_id")
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    predicted_label: _containers.RepeatedScalarFieldContainer[int]
    probabilities: _containers.RepeatedCompositeFieldContainer[Probabilities]
    model_id: str
    def __init__(self, predicted_label: _Optional[_Iterable[int]] = ..., probabilities: _Optional[_Iterable[_Union[Probabilities, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class Probabilities(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("default_model_id", "metadata_key", "models")
    DEFAULT_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_KEY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    default_model_id: str
    metadata_key: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, default_model_id: _Optional[str] = ..., metadata_key: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "default", "test_accuracy", "parameters", "pixel_transform")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    default: bool
    test_accuracy: float
    parameters: int
    pixel_transform: str
    def __init__(self, model_id: _Optional[str] = ..., default: _Optional[bool] = ..., test_accuracy: _Optional[float] = ..., parameters: _Optional[int] = ..., pixel_transform: _Optional[str] = ...) -> None: ...
