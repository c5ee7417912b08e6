"""Type stubs for the compiled module ``numrec._core._optimizers``."""
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_Array = npt.NDArray[np.floating[Any]]

@disjoint_base
class Optimizer:
    """Abstract optimizer: updates parameters in place from their gradients."""

    def step(self, parameters: Sequence[_Array], gradients: Sequence[_Array]) -> None: ...
    def get_config(self) -> dict[str, Any]: ...

@disjoint_base
class SGD(Optimizer):
    """Plain stochastic gradient descent."""

    @property
    def lr(self) -> float: ...
    def __init__(self, lr: float = 0.5) -> None: ...
