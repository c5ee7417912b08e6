"""Type stubs for the compiled module ``numrec._core._shaping``."""
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

from numrec._core._layers import Layer

_Array = npt.NDArray[np.floating[Any]]

@disjoint_base
class _Passing(Layer):
    @property
    def in_features(self) -> int | None: ...
    @property
    def out_features(self) -> int | None: ...

class Flatten(_Passing):
    """Flatten each sample: ``(C, H, W)`` -> ``(C * H * W,)``."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    capabilities: ClassVar[frozenset[str]]
    def __init__(self) -> None: ...
    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]: ...

@disjoint_base
class Dropout(_Passing):
    """Inverted dropout, seeded, active in training mode only."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    capabilities: ClassVar[frozenset[str]]
    @property
    def p(self) -> float: ...
    @property
    def seed(self) -> int: ...
    draws: int
    def __init__(self, p: float, *, seed: int | np.random.Generator | None = None) -> None: ...
    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]: ...
