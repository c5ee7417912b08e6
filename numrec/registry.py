"""The registry of numrec's built-in components.

Every built-in layer, activation, loss and optimizer is registered here once, with what
the rest of the package needs to know about it:

- the public name (``numrec.<name>``, listed in ``numrec.__all__`` and in the API
  reference, which a test checks against this registry);
- for the components a model file can hold (layers and activations), the keys of its
  ``get_config()`` with a check of each JSON value, and the shapes of its parameters as
  a function of that config, so that :mod:`numrec.serialization` checks a file's
  arrays before it builds anything (the constructor then checks the values again);
- small example configurations, on which the conformance suite (``tests/test_conformance.py``)
  runs every check the kind of component promises: finite-difference gradients in
  float32 and float64, the compiled loop against the Python loop, save and load,
  ``get_config`` and ``repr``, thread-count invariance.

A new built-in is its class plus one :func:`register` call below (and its tests).
"""
from dataclasses import dataclass, field

from numrec._core._activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from numrec._core._conv import Conv2D, MaxPool2D
from numrec._core._layers import Dense
from numrec._core._shaping import Dropout, Flatten
from numrec._core._losses import MSE, BinaryCrossEntropy, CrossEntropy, SoftmaxCrossEntropy
from numrec._core._optimizers import SGD, Adam, AdamW
from numrec._core._validation import check_positive_int, is_finite_real

__all__ = ["BUILTINS", "Builtin", "CUSTOM", "KINDS", "register", "register_custom", "savable",
           "unregister_custom"]

#: The kinds of component, in the order the API reference lists them.
KINDS = ("layer", "activation", "loss", "optimizer")
_FLOAT_NAMES = ("float32", "float64")


@dataclass(frozen=True)
class Builtin:
    """What numrec knows of one built-in component class.

    Attributes
    ----------
    cls : type
        The compiled class.
    kind : str
        One of :data:`KINDS`.
    config : dict
        For the kinds a model file holds (layers, activations): each ``get_config()``
        key and a check of its JSON value (True when valid).
    shapes : callable
        ``shapes(config) -> list of tuple``: the shapes of the parameters, in the order
        of ``parameters()`` (empty for a component without parameters).
    examples : tuple of dict
        Constructor arguments of small instances for the conformance suite.
    """

    cls: type
    kind: str
    config: dict = field(default_factory=dict)
    shapes: object = None
    examples: tuple = ({},)

    @property
    def name(self):
        return self.cls.__name__

    def parameter_shapes(self, config):
        """The parameters' shapes for ``config`` (already checked against ``config``)."""
        return list(self.shapes(config)) if self.shapes is not None else []


#: Public name -> :class:`Builtin`, in registration order.
BUILTINS: dict[str, Builtin] = {}


def register(cls, kind, *, config=None, shapes=None, examples=({},)):
    """Register the built-in ``cls`` of ``kind`` (see :class:`Builtin`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if cls.__name__ in BUILTINS:
        raise ValueError(f"{cls.__name__} is registered already")
    BUILTINS[cls.__name__] = Builtin(cls, kind, dict(config or {}), shapes, tuple(examples))
    return cls


#: Name -> :class:`Builtin` for the user's own layers and activations that model files may
#: hold (:func:`register_custom`).
CUSTOM: dict[str, Builtin] = {}


def register_custom(cls, kind, *, config=None, shapes=None):
    """Let model files hold ``cls``, a layer or activation of your own.

    :meth:`Sequential.save <numrec.Sequential.save>` then writes it as its class name
    with ``get_config()``, and :func:`numrec.load` rebuilds it as ``cls(**config)``
    and copies its parameters into the arrays ``parameters()`` returns, in place.
    Register the class again (under the same name) in the program that loads the file:
    loading never imports code named by a file.

    Parameters
    ----------
    cls : type
        A subclass of :class:`~numrec.Layer` or :class:`~numrec.Activation`.
    kind : {"layer", "activation"}
    config : dict, optional
        Each ``get_config()`` key and a check of its JSON value (True when valid); the
        file's config must have exactly these keys.
    shapes : callable, optional
        ``shapes(config) -> list of tuple``: the parameters' shapes, checked against the
        file's arrays before anything is built (required for a layer with parameters).
    """
    from numrec._core._activations import Activation
    from numrec._core._layers import Layer

    base = {"layer": Layer, "activation": Activation}.get(kind)
    if base is None:
        raise ValueError(f"kind must be 'layer' or 'activation', got {kind!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"a {kind} must subclass numrec.{base.__name__}, got {cls!r}")
    name = cls.__name__
    if name in BUILTINS or (name in CUSTOM and CUSTOM[name].cls is not cls):
        taken_by = (BUILTINS | CUSTOM)[name].cls
        raise ValueError(f"the name {name} is taken already (by {taken_by!r})")
    for key, check in dict(config or {}).items():
        if not callable(check):
            raise TypeError(f"config[{key!r}] must be a check of the value (a callable)")
    CUSTOM[name] = Builtin(cls, kind, dict(config or {}), shapes, ())
    return cls


def unregister_custom(cls):
    """Undo :func:`register_custom` for ``cls``."""
    if CUSTOM.get(cls.__name__, None) is None or CUSTOM[cls.__name__].cls is not cls:
        raise ValueError(f"{cls!r} is not registered")
    del CUSTOM[cls.__name__]


def savable():
    """What a model file can hold, by name: the built-in layers and activations, then
    those registered with :func:`register_custom`."""
    return {**{name: entry for name, entry in BUILTINS.items()
               if entry.kind in ("layer", "activation")}, **CUSTOM}


# --- checks of JSON values in model files -----------------------------------------------------

def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _non_negative_float(value):
    return is_finite_real(value) and value >= 0


def _float_dtype_name(value):
    return value in _FLOAT_NAMES


def _probability_below_one(value):
    return is_finite_real(value) and 0 <= value < 1


def _seed64(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 64


def _dense_shapes(config):
    n_in = check_positive_int(config["in_features"], "in_features")
    n_out = check_positive_int(config["out_features"], "out_features")
    return [(n_out, n_in), (n_out,)]


def _int_or_pair(minimum):
    def check(value):
        items = value if isinstance(value, list) and len(value) == 2 else [value]
        return all(isinstance(item, int) and not isinstance(item, bool) and item >= minimum
                   for item in items)
    return check


def _as_pair(value):
    return tuple(value) if isinstance(value, list) else (value, value)


def _conv_shapes(config):
    n_in = check_positive_int(config["in_channels"], "in_channels")
    n_out = check_positive_int(config["out_channels"], "out_channels")
    return [(n_out, n_in) + _as_pair(config["kernel_size"]), (n_out,)]


# --- the built-ins --------------------------------------------------------------------------

register(Dense, "layer",
         config={"in_features": _positive_int, "out_features": _positive_int,
                 "dtype": _float_dtype_name},
         shapes=_dense_shapes,
         examples=({"in_features": 7, "out_features": 5},
                   {"in_features": 300, "out_features": 130}))
# Without parameters, they take their sizes from the layer before them (Layer.build).
# Dropout's masks change at each training pass, which finite differences cannot follow:
# tests/test_cnn.py checks it (replaying its masks).
register(Flatten, "layer")
register(Dropout, "layer", config={"p": _probability_below_one, "seed": _seed64},
         examples=())

# Images (channels, height, width): the conformance suite builds each example for the
# input shape it lists beside them (tests/test_conformance.py, IMAGE_SHAPES).
register(Conv2D, "layer",
         config={"in_channels": _positive_int, "out_channels": _positive_int,
                 "kernel_size": _int_or_pair(1), "stride": _int_or_pair(1),
                 "padding": _int_or_pair(0), "dtype": _float_dtype_name},
         shapes=_conv_shapes,
         examples=({"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
                   {"in_channels": 3, "out_channels": 2, "kernel_size": [2, 3],
                    "stride": [2, 1], "padding": [0, 1]}))
register(MaxPool2D, "layer",
         config={"size": _int_or_pair(1), "stride": _int_or_pair(1)},
         examples=({"size": 2, "stride": 2}, {"size": [3, 2], "stride": [1, 2]}))

register(LeakyReLU, "activation", config={"alpha": _non_negative_float},
         examples=({"alpha": 0.2}, {"alpha": 0.0}))
register(ReLU, "activation")
register(Sigmoid, "activation")
register(Tanh, "activation")
register(Identity, "activation")
register(Softmax, "activation")

register(MSE, "loss")
register(CrossEntropy, "loss", examples=({}, {"eps": 0.0}))
register(SoftmaxCrossEntropy, "loss")
register(BinaryCrossEntropy, "loss")

register(SGD, "optimizer",
         examples=({"lr": 0.1}, {"lr": 0.1, "momentum": 0.9},
                   {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                   {"lr": 0.01, "momentum": 0.9, "classic": True},
                   {"lr": 0.01, "momentum": 0.99, "classic": True, "weight_decay": 0.01}))
register(Adam, "optimizer",
         examples=({"lr": 0.01}, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05},
                   {"lr": 0.01, "betas": (0.3, 0.5), "eps": 1e-6}))
register(AdamW, "optimizer",
         examples=({"lr": 0.01}, {"lr": 0.01, "betas": (0.85, 0.995), "weight_decay": 0.1}))
