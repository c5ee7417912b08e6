"""Type stubs for the compiled module ``numrec._core._optimizers``."""
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_Array = npt.NDArray[np.floating[Any]]

@disjoint_base
class Optimizer:
    """Abstract optimizer: updates parameters in place from their gradients."""

    #: The dtypes (``"float32"``, ``"float64"``) whose update kernels the class implements.
    kernel_dtypes: ClassVar[tuple[str, ...]]
    @property
    def steps(self) -> int: ...
    @property
    def state_per_parameter(self) -> int: ...
    def step(self, parameters: Sequence[_Array], gradients: Sequence[_Array]) -> None: ...
    def prepare(self, parameters: Sequence[_Array]) -> None: ...
    def state(self) -> list[list[_Array]]: ...
    def folded_step(self) -> float | None: ...
    def get_config(self) -> dict[str, Any]: ...

@disjoint_base
class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    @property
    def lr(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def nesterov(self) -> bool: ...
    @property
    def weight_decay(self) -> float: ...
    def __init__(
        self,
        lr: float = 0.5,
        momentum: float = 0.0,
        *,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None: ...
