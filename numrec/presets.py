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
``cnn``
    A convolutional network on the 28 x 28 images, ``(1, 28, 28)``: conv(1→16, 5x5)
    ReLU, max-pool 2, conv(16→32, 5x5) ReLU, max-pool 2, flatten, dense 10,
    cross-entropy on the logits, Adam (learning rate 0.001, batch 64), He
    initialisation; over 99 % test accuracy.
``cnn-keras``
    The Keras MNIST example's network: conv(1→32, 3x3) ReLU, conv(32→64, 3x3) ReLU,
    max-pool 2, dropout 0.25, flatten, dense 128 ReLU, dropout 0.5, dense 10, with the
    training of ``cnn`` (batch 128); ten times the arithmetic of ``cnn`` per image.
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
#: The rules ``Conv2D(init=...)`` knows.
CONV_INITS = ("he", "torch")
#: A preset's convolutional steps: ``("conv", out_channels, kernel_size)``,
#: ``("pool", size)``, ``("dropout", p)``.
STEPS = ("conv", "pool", "dropout")
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class Setup:
    """Every choice of a digit network and of its training.

    ``convolution`` (empty for a fully connected network) lists the steps on the
    ``(1, 28, 28)`` images before the dense layers: ``("conv", out_channels,
    kernel_size)`` (a :class:`~numrec.Conv2D` followed by the hidden activation),
    ``("pool", size)`` (:class:`~numrec.MaxPool2D`) and ``("dropout", p)``; a
    :class:`~numrec.Flatten` follows them.  ``dropout`` above 0 puts a
    :class:`~numrec.Dropout` after each hidden dense layer's activation.

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
    convolution: tuple = ()
    dropout: float = 0.0

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
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for step in self.convolution:
            if not (isinstance(step, tuple) and step and step[0] in STEPS):
                raise ValueError(f"unknown convolutional step {step!r} (steps: conv, pool, "
                                 f"dropout)")
        if self.convolution and self.init not in CONV_INITS:
            raise ValueError(f"a convolutional network's init is one of "
                             f"{', '.join(CONV_INITS)}, not {self.init}")
        return self

    @property
    def sizes(self):
        """The dense layers' widths, inputs (the flattened features) to outputs."""
        return [self._features()[1], *self.hidden, N_CLASSES]

    @property
    def input_shape(self):
        """The shape of one input sample: ``(784,)``, or ``(1, 28, 28)`` for a
        convolutional network."""
        return IMAGE_SHAPE if self.convolution else (N_INPUTS,)

    def _features(self, rng=None, dtype=np.float32):
        """The convolutional components (built only with ``rng``) and the number of
        values per sample they give."""
        channels, height, width = IMAGE_SHAPE
        components = []
        for step in self.convolution:
            if step[0] == "conv":
                _, n_out, size = step
                if rng is not None:
                    components.append(numrec.Conv2D(channels, n_out, size, dtype=dtype,
                                                    seed=rng, init=self.init))
                    components.append(ACTIVATIONS[self.activation](self.alpha))
                channels, height, width = n_out, height - size + 1, width - size + 1
            elif step[0] == "pool":
                if rng is not None:
                    components.append(numrec.MaxPool2D(step[1]))
                height, width = height // step[1], width // step[1]
            elif rng is not None:
                components.append(numrec.Dropout(step[1], seed=_dropout_seed(rng)))
        if components:
            components.append(numrec.Flatten())
        return components, (channels * height * width if self.convolution else N_INPUTS)

    def model(self, *, seed=None, dtype=np.float32):
        """The network: the convolutional steps, if any, then Dense layers with the
        hidden activation (and dropout) between them."""
        rng = as_rng(seed)
        components, _ = self._features(rng, dtype) if self.convolution else ([], N_INPUTS)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        for index, (n_in, n_out) in enumerate(pairs):
            components.append(numrec.Dense(n_in, n_out, seed=rng, dtype=dtype, init=self.init))
            if index < len(pairs) - 1:
                components.append(ACTIVATIONS[self.activation](self.alpha))
                if self.dropout:
                    components.append(numrec.Dropout(self.dropout, seed=_dropout_seed(rng)))
        output = OUTPUT_ACTIVATIONS[self.output_activation]
        if output is not None:
            components.append(getattr(numrec, output)())
        return numrec.Sequential(components, loss=self.loss(), input_shape=self.input_shape)

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
        layers = "-".join(map(str, self.sizes))
        if self.convolution:
            layers = ", ".join([*map(_describe_step, self.convolution), "flatten",
                                *(f"dense {n}" + (f", dropout {self.dropout:g}"
                                                  if self.dropout else "")
                                  for n in self.hidden), f"dense {N_CLASSES}"])
        return (f"{layers}, {hidden}, {self.output_activation} "
                f"output, {self.loss_name}, {optimizer}, {self.init} init, batch "
                f"{self.batch_size}{'' if self.shuffle else ', no shuffling'}")


def _describe_step(step):
    if step[0] == "conv":
        return f"conv {step[1]} {step[2]}x{step[2]}"
    return f"{'max-pool' if step[0] == 'pool' else step[0]} {step[1]:g}"


def _dropout_seed(rng):
    """A dropout layer's seed, drawn from the model's generator (the same seed, the
    same masks)."""
    return int(rng.integers(0, 2 ** 63))


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
    "cnn": Setup(convolution=(("conv", 16, 5), ("pool", 2), ("conv", 32, 5), ("pool", 2)),
                 hidden=(), activation="relu", output_activation="identity",
                 loss_name="softmax-cross-entropy", optimizer_name="adam", lr=0.001,
                 batch_size=64),
    "cnn-keras": Setup(convolution=(("conv", 32, 3), ("conv", 64, 3), ("pool", 2),
                                    ("dropout", 0.25)),
                       hidden=(128,), dropout=0.5, activation="relu",
                       output_activation="identity", loss_name="softmax-cross-entropy",
                       optimizer_name="adam", lr=0.001, batch_size=128),
}
