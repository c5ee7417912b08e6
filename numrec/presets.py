"""Digit networks described by name: the settings behind ``numrec train`` and its presets.

A :class:`Setup` names every choice of a fully connected MNIST network and its training
(hidden widths, activations, loss, optimizer, initialisation, batch size, shuffling);
:data:`PRESETS` holds the named ones, and :meth:`Setup.model`, :meth:`Setup.loss` and
:meth:`Setup.optimizer` build the numrec objects::

    from numrec.presets import PRESETS
    setup = PRESETS["seed-pytorch"]
    model = setup.model(seed=0)
    model.fit(x, y, loss=setup.loss(), optimizer=setup.optimizer(),
              batch_size=setup.batch_size, shuffle=setup.shuffle)

The presets:

``reference``
    The reference network: 784-256-10, LeakyReLU(0.2), sigmoid outputs, quadratic cost,
    plain SGD (learning rate 0.75, batch 32), He initialisation.
``seed-rust``
    The reference implementation's own benchmark: 784-256-10, LeakyReLU(0.2), softmax
    outputs with categorical cross-entropy, SGD with learning rate 0.8, batch 512, He
    initialisation.
``seed-pytorch``
    Its PyTorch comparison script: 784-256-10, ReLU, cross-entropy on the logits
    (PyTorch's ``CrossEntropyLoss``), SGD with learning rate 0.1, batch 512, no
    shuffling, Kaiming-normal weights and zero biases.
"""
import dataclasses
from dataclasses import dataclass

import numpy as np

import numrec
from numrec._core._validation import as_rng

__all__ = ["ACTIVATIONS", "INITS", "LOSSES", "OPTIMIZERS", "OUTPUT_ACTIVATIONS", "PRESETS",
           "Setup"]

N_INPUTS = 784
N_CLASSES = 10

#: Hidden activation name -> ``f(alpha) -> Activation``.
ACTIVATIONS = {
    "leaky-relu": lambda alpha: numrec.LeakyReLU(alpha),
    "relu": lambda alpha: numrec.ReLU(),
    "tanh": lambda alpha: numrec.Tanh(),
    "sigmoid": lambda alpha: numrec.Sigmoid(),
}
#: Output activation name -> class (None: the last layer's outputs are the logits).
OUTPUT_ACTIVATIONS = {"sigmoid": "Sigmoid", "softmax": "Softmax", "identity": None}
#: Loss name -> (class name, the output activations it is meant for).
LOSSES = {
    "mse": ("MSE", ("sigmoid", "softmax", "identity")),
    "cross-entropy": ("CrossEntropy", ("softmax",)),
    "softmax-cross-entropy": ("SoftmaxCrossEntropy", ("identity",)),
    "binary-cross-entropy": ("BinaryCrossEntropy", ("sigmoid",)),
}
#: Optimizer name -> class name.
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
#: ``Dense(init=...)`` rules.
INITS = ("he", "glorot", "uniform", "torch")


@dataclass(frozen=True)
class Setup:
    """Every choice of a fully connected digit network and of its training.

    ``momentum``, ``nesterov`` and ``classic`` apply to SGD, ``betas`` to Adam and AdamW, ``alpha``
    to the leaky ReLU; :meth:`check` refuses them elsewhere, and pairs of loss and output
    activation that do not belong together.
    """

    hidden: tuple = (256,)
    activation: str = "leaky-relu"
    alpha: float = 0.2
    output_activation: str = "sigmoid"
    loss_name: str = "mse"
    optimizer_name: str = "sgd"
    lr: float = 0.75
    momentum: float = 0.0
    nesterov: bool = False
    classic: bool = False
    weight_decay: float | None = None
    betas: tuple | None = None
    init: str = "he"
    batch_size: int = 32
    shuffle: bool = True

    def replace(self, **changes):
        """A copy with ``changes`` (the fields given on a command line), checked."""
        return dataclasses.replace(self, **changes).check()

    def check(self):
        """Return ``self`` if its choices fit together, else raise ``ValueError``."""
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("output activation", self.output_activation, OUTPUT_ACTIVATIONS)
        _check_choice("loss", self.loss_name, LOSSES)
        _check_choice("optimizer", self.optimizer_name, OPTIMIZERS)
        _check_choice("init", self.init, INITS)
        meant_for = LOSSES[self.loss_name][1]
        if self.output_activation not in meant_for:
            raise ValueError(
                f"the loss {self.loss_name} needs the output activation "
                f"{' or '.join(meant_for)}, not {self.output_activation}"
                + (" (it takes the logits)" if meant_for == ("identity",) else "")
            )
        if self.optimizer_name != "sgd" and (self.momentum or self.nesterov or self.classic):
            raise ValueError(f"momentum, nesterov and classic are SGD's; the optimizer is "
                             f"{self.optimizer_name} (use betas)")
        if self.optimizer_name == "sgd" and self.betas is not None:
            raise ValueError("betas are Adam's; the optimizer is sgd (use momentum)")
        if (self.nesterov or self.classic) and not self.momentum:
            raise ValueError("nesterov and classic need a momentum above 0")
        if self.nesterov and self.classic:
            raise ValueError("classic momentum has no Nesterov form")
        return self

    @property
    def sizes(self):
        """The layer widths, inputs to outputs."""
        return [N_INPUTS, *self.hidden, N_CLASSES]

    def model(self, *, seed=None, dtype=np.float32):
        """The network: Dense layers with the hidden activation between them."""
        rng = as_rng(seed)
        components = []
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        for index, (n_in, n_out) in enumerate(pairs):
            components.append(numrec.Dense(n_in, n_out, seed=rng, dtype=dtype, init=self.init))
            if index < len(pairs) - 1:
                components.append(ACTIVATIONS[self.activation](self.alpha))
        output = OUTPUT_ACTIVATIONS[self.output_activation]
        if output is not None:
            components.append(getattr(numrec, output)())
        return numrec.Sequential(components, loss=self.loss())

    def loss(self):
        """The loss object."""
        return getattr(numrec, LOSSES[self.loss_name][0])()

    def optimizer(self):
        """The optimizer object, with this setup's settings."""
        settings = {"lr": self.lr}
        if self.weight_decay is not None:
            settings["weight_decay"] = self.weight_decay
        if self.optimizer_name == "sgd":
            if self.momentum:
                settings.update(momentum=self.momentum, nesterov=self.nesterov,
                                classic=self.classic)
        elif self.betas is not None:
            settings["betas"] = tuple(self.betas)
        return getattr(numrec, OPTIMIZERS[self.optimizer_name])(**settings)

    def describe(self):
        """One line: the network and its training."""
        hidden = (f"leaky ReLU {self.alpha:g}" if self.activation == "leaky-relu"
                  else self.activation)
        optimizer = f"{self.optimizer_name} lr {self.lr:g}"
        if self.momentum:
            optimizer += (f" {'classic ' if self.classic else ''}momentum {self.momentum:g}"
                          + (" nesterov" if self.nesterov else ""))
        if self.betas is not None:
            optimizer += f" betas {self.betas[0]:g} {self.betas[1]:g}"
        if self.weight_decay:
            optimizer += f" weight decay {self.weight_decay:g}"
        return (f"{'-'.join(map(str, self.sizes))}, {hidden}, {self.output_activation} "
                f"output, {self.loss_name}, {optimizer}, {self.init} init, batch "
                f"{self.batch_size}{'' if self.shuffle else ', no shuffling'}")


def _check_choice(what, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r} (choose from {', '.join(choices)})")


#: Named setups (see the module's docstring).
PRESETS = {
    "reference": Setup(),
    "seed-rust": Setup(output_activation="softmax", loss_name="cross-entropy", lr=0.8,
                       batch_size=512),
    "seed-pytorch": Setup(activation="relu", output_activation="identity",
                          loss_name="softmax-cross-entropy", lr=0.1, batch_size=512,
                          shuffle=False),
}
