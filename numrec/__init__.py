"""numrec: small neural networks on the CPU, with compiled Cython kernels.

Build a network from layers and activations, train it with a loss and an optimizer::

    import numrec
    model = numrec.Sequential([
        numrec.Dense(784, 256, seed=0), numrec.LeakyReLU(0.2),
        numrec.Dense(256, 10, seed=1), numrec.Sigmoid(),
    ])
    history = model.fit(x_train, y_train, epochs=5, loss=numrec.MSE(),
                        optimizer=numrec.SGD(lr=0.5), validation_data=(x_test, y_test))
"""
import os as _os
from importlib.metadata import PackageNotFoundError, version as _version

# The compiled loop's threads meet at OpenMP barriers several times a batch.  GNU OpenMP
# spins 300,000 times at each before it sleeps: on a machine busy with other work the
# spinning thread takes the processor from the one it waits for, and an epoch of the
# reference network took 25-38 s instead of 0.3 s (load 12 on 2 cores).  1,000 spins
# keep the idle speed and bound that collapse (1.6 s).  It must be set before OpenMP
# loads, and a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins (docs/architecture.rst).
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "1000")

# The abstract classes, then the built-ins of numrec.registry (a test keeps the two in step).
from numrec._core._activations import (Activation, Identity, LeakyReLU, ReLU, Sigmoid,
                                       Softmax, Tanh)
from numrec._core._layers import Dense, Layer
from numrec._core._shaping import Dropout, Flatten
from numrec._core._conv import Conv2D, MaxPool2D
from numrec._core._losses import (
    MSE, BinaryCrossEntropy, CrossEntropy, Loss, SoftmaxCrossEntropy,
)
from numrec._core._optimizers import SGD, Adam, AdamW, Optimizer
from numrec.model import DivergedError, History, Sequential, TrainingWarning, mnist_mlp
from numrec.serialization import ModelFileError, load
from numrec import callbacks, datasets

try:
    __version__ = _version("numrec")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    # the abstract classes, the model and its helpers
    "Activation", "DivergedError", "History", "Layer", "Loss", "ModelFileError", "Optimizer",
    "Sequential", "TrainingWarning", "callbacks", "datasets", "load", "mnist_mlp",
    # the built-ins, kind by kind
    "Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout",
    "LeakyReLU", "ReLU", "Sigmoid", "Tanh", "Identity", "Softmax",
    "MSE", "CrossEntropy", "SoftmaxCrossEntropy", "BinaryCrossEntropy",
    "SGD", "Adam", "AdamW",
]
