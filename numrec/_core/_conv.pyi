"""Type stubs for the compiled module ``numrec._core._conv``."""
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

from numrec._core._layers import Layer

_SeedLike = int | np.random.Generator | None
_Pair = int | tuple[int, int] | list[int]
_Array = npt.NDArray[np.floating[Any]]

#: ``Conv2D(init=...)`` rules.
CONV_INITIALISERS: tuple[str, ...]

@disjoint_base
class Conv2D(Layer):
    """2-D convolution over images, as PyTorch's ``nn.Conv2d``."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    capabilities: ClassVar[frozenset[str]]
    @property
    def in_channels(self) -> int: ...
    @property
    def out_channels(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        stride: _Pair = 1,
        padding: _Pair = 0,
        *,
        dtype: npt.DTypeLike = ...,
        seed: _SeedLike = None,
        init: str = "torch",
    ) -> None: ...
    @property
    def kernel_size(self) -> tuple[int, int]: ...
    @property
    def stride(self) -> tuple[int, int]: ...
    @property
    def padding(self) -> tuple[int, int]: ...
    def build(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]: ...
    @property
    def built(self) -> bool: ...
    @property
    def input_shape(self) -> tuple[int, int, int]: ...  # type: ignore[override]
    @property
    def output_shape(self) -> tuple[int, int, int]: ...  # type: ignore[override]
    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...
    @property
    def weights(self) -> _Array: ...
    @weights.setter
    def weights(self, value: _Array) -> None: ...
    @property
    def bias(self) -> _Array: ...
    @bias.setter
    def bias(self, value: _Array) -> None: ...
    @property
    def grad_weights(self) -> _Array: ...
    @property
    def grad_bias(self) -> _Array: ...
    @property
    def n_units(self) -> int: ...
    def unit_sizes(self) -> list[int]: ...
    def unit_shares(self, dtype: npt.DTypeLike) -> tuple[bool, int, int, bool]: ...

@disjoint_base
class MaxPool2D(Layer):
    """2-D max pooling over images, as PyTorch's ``nn.MaxPool2d``."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    capabilities: ClassVar[frozenset[str]]
    def __init__(self, size: _Pair, stride: _Pair | None = None) -> None: ...
    @property
    def size(self) -> tuple[int, int]: ...
    @property
    def stride(self) -> tuple[int, int]: ...
    def build(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]: ...
    @property
    def built(self) -> bool: ...
    @property
    def input_shape(self) -> tuple[int, int, int]: ...  # type: ignore[override]
    @property
    def output_shape(self) -> tuple[int, int, int]: ...  # type: ignore[override]
    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...
    @property
    def n_units(self) -> int: ...
    def unit_sizes(self) -> list[int]: ...
    def unit_shares(self, dtype: npt.DTypeLike) -> tuple[bool, int, int, bool]: ...
