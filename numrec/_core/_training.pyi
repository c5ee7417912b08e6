"""Type stubs for the compiled module ``numrec._core._training``."""
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from numrec._core._activations import Activation
from numrec._core._layers import Layer
from numrec._core._losses import Loss
from numrec._core._optimizers import Optimizer
from typing_extensions import disjoint_base

_Stages = Sequence[tuple[Layer, Activation | None]]

def is_compiled(component: object) -> bool: ...
def kernel_problem(component: object, dtype: npt.DTypeLike) -> str | None: ...
def plan_problem(
    components: Iterable[Layer | Activation], dtype: npt.DTypeLike = ...
) -> str | None: ...
def plan_stages(
    components: Iterable[Layer | Activation], dtype: npt.DTypeLike = ...
) -> list[tuple[Layer, Activation | None]] | None: ...
def thread_plan(
    stages: _Stages,
    dtype: npt.DTypeLike,
    batch_size: int,
    x: npt.NDArray[Any],
    threads: int,
    training: bool = ...,
) -> tuple[int, int, bool]: ...
def sparse_max_density(dtype: npt.DTypeLike, training: bool, batch_size: int) -> float: ...
def mostly_zeros(x: npt.NDArray[Any], max_density: float | None = ...) -> bool: ...

@disjoint_base
class FusedTrainer:
    """Runs a run of compiled stages over batches, without the GIL."""

    @property
    def batch_size(self) -> int: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def correct(self) -> int: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    def __init__(
        self,
        stages: _Stages,
        loss: Loss | None,
        optimizer: Optimizer | None,
        batch_size: int,
        dtype: npt.DTypeLike,
        n_threads: int = 1,
        exact_shares: bool = False,
        *,
        first_slot: int = 0,
        input_gradient: bool = False,
    ) -> None: ...
    def refresh_step(self) -> None: ...
    def train(
        self,
        x: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        order: npt.NDArray[np.int64],
        start: int,
        stop: int,
        weights: npt.NDArray[np.float64] | None = None,
    ) -> float: ...
    def holding(self, x: npt.NDArray[Any]) -> AbstractContextManager[FusedTrainer]: ...
    def epoch(
        self,
        x: npt.NDArray[Any] | None,
        targets: npt.NDArray[Any],
        order: npt.NDArray[np.int64],
        weights: npt.NDArray[np.float64] | None = None,
    ) -> AbstractContextManager[FusedTrainer]: ...
    def count_correct(self, x: npt.NDArray[Any], labels: npt.NDArray[np.int64]) -> int: ...
    def evaluate(
        self, x: npt.NDArray[Any], targets: npt.NDArray[Any], loss: Loss | None = None
    ) -> tuple[float, int]: ...
    def predict(self, x: npt.NDArray[Any], out: npt.NDArray[np.floating[Any]]) -> bool: ...
    def forward_batch(self, start: int, m: int) -> npt.NDArray[np.floating[Any]]: ...
    def forward_input(self, x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]: ...
    def forward_rows(self, x: npt.NDArray[Any]) -> npt.NDArray[np.floating[Any]]: ...
    def loss_batch(self, start: int, m: int) -> float: ...
    def backward_batch(
        self, grad_output: npt.NDArray[np.floating[Any]] | None, m: int
    ) -> npt.NDArray[np.floating[Any]] | None: ...
