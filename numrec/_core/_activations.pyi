"""Type stubs for the compiled module ``numrec._core._activations``."""
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_Array = npt.NDArray[np.floating[Any]]

@disjoint_base
class Activation:
    """Abstract activation function ``a = f(z)``."""

    def forward(self, z: _Array) -> _Array: ...
    def derivative(self, z: _Array, a: _Array) -> _Array: ...
    def backward(self, z: _Array, a: _Array, grad_a: _Array) -> _Array: ...
    def get_config(self) -> dict[str, Any]: ...

class ElementwiseActivation(Activation):
    """Base of the compiled elementwise activations."""

@disjoint_base
class LeakyReLU(ElementwiseActivation):
    """Leaky rectified linear unit."""

    @property
    def alpha(self) -> float: ...
    def __init__(self, alpha: float = 0.2) -> None: ...

class Sigmoid(ElementwiseActivation):
    """Logistic sigmoid."""

    def __init__(self) -> None: ...
