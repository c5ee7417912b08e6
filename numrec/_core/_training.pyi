"""Type stubs for the compiled module ``numrec._core._training``."""
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from numrec._core._activations import Activation
from numrec._core._layers import Layer
from numrec._core._losses import Loss
from numrec._core._optimizers import Optimizer
from typing_extensions import disjoint_base

def is_compiled(component: object) -> bool: ...
def mostly_zeros(x: npt.NDArray[Any]) -> bool: ...
def plan_stages(
    components: Iterable[Layer | Activation],
) -> list[tuple[Layer, Activation | None]] | None: ...

@disjoint_base
class FusedTrainer:
    """Runs batches of a model made only of compiled components, without the GIL."""

    @property
    def batch_size(self) -> int: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    def __init__(
        self,
        stages: list[tuple[Layer, Activation | None]],
        loss: Loss,
        optimizer: Optimizer,
        batch_size: int,
        dtype: npt.DTypeLike,
        n_threads: int = 1,
        exact_shares: bool = False,
    ) -> None: ...
    def train(
        self,
        x: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        order: npt.NDArray[np.int64],
        start: int,
        stop: int,
    ) -> float: ...
    def holding(self, x: npt.NDArray[Any]) -> AbstractContextManager[FusedTrainer]: ...
    def count_correct(self, x: npt.NDArray[Any], labels: npt.NDArray[np.int64]) -> int: ...
