"""Type stubs for the compiled module ``numrec._core._layers``."""
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_SeedLike = int | np.random.Generator | None

@disjoint_base
class Layer:
    """Abstract layer with parameters."""

    def forward(self, x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]: ...
    def backward(
        self, grad_output: npt.NDArray[np.floating[Any]]
    ) -> npt.NDArray[np.floating[Any]]: ...
    def parameters(self) -> list[npt.NDArray[np.floating[Any]]]: ...
    def gradients(self) -> list[npt.NDArray[np.floating[Any]]]: ...
    def get_config(self) -> dict[str, Any]: ...

@disjoint_base
class Dense(Layer):
    """Fully connected layer, ``z = x @ W.T + b``."""

    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        seed: _SeedLike = None,
        dtype: npt.DTypeLike = ...,
    ) -> None: ...
    @property
    def weights(self) -> npt.NDArray[np.floating[Any]]: ...
    @weights.setter
    def weights(self, value: npt.NDArray[np.floating[Any]]) -> None: ...
    @property
    def bias(self) -> npt.NDArray[np.floating[Any]]: ...
    @bias.setter
    def bias(self, value: npt.NDArray[np.floating[Any]]) -> None: ...
    @property
    def grad_weights(self) -> npt.NDArray[np.floating[Any]]: ...
    @property
    def grad_bias(self) -> npt.NDArray[np.floating[Any]]: ...
