"""Type stubs for the compiled module ``numrec._core._losses``."""
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_Array = npt.NDArray[np.floating[Any]]

@disjoint_base
class Loss:
    """Abstract loss, a mean over the batch."""

    #: The dtypes (``"float32"``, ``"float64"``) whose kernel the class implements.
    kernel_dtypes: ClassVar[tuple[str, ...]]
    def value(self, output: _Array, target: _Array) -> float: ...
    def gradient(self, output: _Array, target: _Array) -> _Array: ...
    def probabilities(self, output: _Array) -> _Array: ...
    def get_config(self) -> dict[str, Any]: ...

class MSE(Loss):
    """Quadratic cost, summed over the outputs and averaged over the batch."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(self) -> None: ...

@disjoint_base
class CrossEntropy(Loss):
    """Categorical cross-entropy of probabilities, averaged over the batch."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    @property
    def eps(self) -> float: ...
    def __init__(self, eps: float = 1e-7) -> None: ...

class SoftmaxCrossEntropy(Loss):
    """Softmax and cross-entropy in one, from logits, averaged over the batch."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(self) -> None: ...

class BinaryCrossEntropy(Loss):
    """Binary cross-entropy of probabilities, averaged over the batch."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(self) -> None: ...
