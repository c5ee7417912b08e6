"""Type stubs for the compiled module ``numrec._core._activations``."""
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_Array = npt.NDArray[np.floating[Any]]

@disjoint_base
class Activation:
    """Abstract activation function ``a = f(z)``."""

    #: The dtypes (``"float32"``, ``"float64"``) whose kernels the class implements.
    kernel_dtypes: ClassVar[tuple[str, ...]]
    #: True for a function of a whole row (softmax): its kernels run on whole rows only.
    rowwise: ClassVar[bool]
    #: True for a function that maps many inputs to exact zeros (ReLU): a hint that the
    #: layer above may train on kernels that skip zero inputs.
    zero_outputs: ClassVar[bool]
    def forward(self, z: _Array) -> _Array: ...
    def derivative(self, z: _Array, a: _Array) -> _Array: ...
    def backward(self, z: _Array, a: _Array, grad_a: _Array) -> _Array: ...
    def forward_pass(self, z: _Array) -> _Array: ...
    def backward_pass(self, grad_output: _Array) -> _Array: ...
    def get_config(self) -> dict[str, Any]: ...

class ElementwiseActivation(Activation):
    """Base of the compiled elementwise activations."""

@disjoint_base
class LeakyReLU(ElementwiseActivation):
    """Leaky rectified linear unit."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    @property
    def alpha(self) -> float: ...
    def __init__(self, alpha: float = 0.2) -> None: ...

class ReLU(ElementwiseActivation):
    """Rectified linear unit."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    zero_outputs: ClassVar[bool]
    def __init__(self) -> None: ...

class Sigmoid(ElementwiseActivation):
    """Logistic sigmoid."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(self) -> None: ...

class Tanh(ElementwiseActivation):
    """Hyperbolic tangent."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(self) -> None: ...

class Identity(ElementwiseActivation):
    """The identity, for a linear output layer."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    def __init__(self) -> None: ...

class Softmax(Activation):
    """Softmax over each row (the last axis)."""

    kernel_dtypes: ClassVar[tuple[str, ...]]
    rowwise: ClassVar[bool]
    def __init__(self) -> None: ...
