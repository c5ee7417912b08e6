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
    @lr.setter
    def lr(self, value: float) -> None: ...
    @property
    def momentum(self) -> float: ...
    @property
    def nesterov(self) -> bool: ...
    @property
    def classic(self) -> bool: ...
    @property
    def weight_decay(self) -> float: ...
    def __init__(
        self,
        lr: float = 0.5,
        momentum: float = 0.0,
        *,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        classic: bool = False,
    ) -> None: ...

@disjoint_base
class Adam(Optimizer):
    """Adam (PyTorch's ``torch.optim.Adam``), with an optional L2 weight decay."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    @property
    def lr(self) -> float: ...
    @lr.setter
    def lr(self, value: float) -> None: ...
    @property
    def betas(self) -> tuple[float, float]: ...
    @property
    def beta1(self) -> float: ...
    @property
    def beta2(self) -> float: ...
    @property
    def eps(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    def __init__(
        self,
        lr: float = 0.001,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None: ...

class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's ``torch.optim.AdamW``)."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(
        self,
        lr: float = 0.001,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None: ...
