"""Writing a :class:`~numrec.Sequential` as an ONNX file (``Sequential.to_onnx``).

The graph has one input, ``"input"`` of shape ``(batch, n_inputs)``, and one output,
``"output"`` of shape ``(batch, n_outputs)``, both in the model's dtype (float32 or
float64); ``batch`` is free.  The input holds features as :meth:`Sequential.predict
<numrec.Sequential.predict>` takes them in floating point: pixels already divided by 255
(``predict`` scales ``uint8`` arrays itself; the graph does not).  The output is what
``predict`` returns: for a model whose loss reads its outputs as logits
(:class:`~numrec.SoftmaxCrossEntropy`) a softmax over them, the probabilities; with
``raw=True``, or for any other loss, the last component's outputs.

Each built-in component becomes ONNX operators (opset 13, IR version 7, which every
onnxruntime since 1.6 and onnxruntime-web read):

============================  =========================================================
numrec                        ONNX
============================  =========================================================
:class:`~numrec.Dense`        ``Gemm(x, W, b, transB=1)``: ``x @ W.T + b``
:class:`~numrec.LeakyReLU`    ``LeakyRelu(alpha)``; in float64 ``Where(x > 0, x, alpha x)``
:class:`~numrec.ReLU`         ``Relu``
:class:`~numrec.Sigmoid`      ``Sigmoid``
:class:`~numrec.Tanh`         ``Tanh``
:class:`~numrec.Identity`     ``Identity``
:class:`~numrec.Softmax`      ``Softmax(axis=1)``
============================  =========================================================

A component of any other class, a Python-written one included (even a subclass of a
built-in), cannot be exported: :class:`ExportError` names it.  A new component type is
one converter function registered in :data:`CONVERTERS` with :func:`converter`.

Needs the ``onnx`` package (``pip install ".[onnx]"``
in numrec's source folder); it is imported only when a model is exported.
"""
import numpy as np

from numrec._core._activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from numrec._core._conv import Conv2D, MaxPool2D
from numrec._core._layers import Dense
from numrec._core._shaping import Dropout, Flatten
from numrec._core._losses import Loss, SoftmaxCrossEntropy
from numrec._files import atomic_writer

__all__ = ["CONVERTERS", "ExportError", "LOSS_CONVERTERS", "OPSET", "converter", "export",
           "to_model_proto"]

#: The ONNX operator set the graphs use, and the IR version of the files.
OPSET = 13
IR_VERSION = 7
INPUT, OUTPUT = "input", "output"

_INSTALL_HINT = 'pip install ".[onnx]" in numrec\'s source folder'


class ExportError(TypeError):
    """A model holds a component (or loss) that ONNX export cannot express."""


#: Component class -> ``convert(component, graph, x) -> y``: adds the component's
#: operators to ``graph`` (a :class:`_Graph`), reading the tensor named ``x``, and
#: returns the name of its output tensor.  Looked up by exact class.
CONVERTERS: dict = {}

#: Loss class -> ``convert(graph, x) -> y`` giving ``loss.probabilities`` of the outputs,
#: for losses that override :meth:`Loss.probabilities <numrec.Loss.probabilities>`.
LOSS_CONVERTERS: dict = {}


def converter(cls, table=CONVERTERS):
    """Decorator: register the function as the converter of ``cls`` in ``table``."""

    def register(function):
        table[cls] = function
        return function

    return register


class _Graph:
    """The nodes and constants of the graph being built, in the model's dtype."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._count = 0

    def _name(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem, value):
        """Add ``value`` (cast to the model's dtype) as a constant; return its name."""
        name = self._name(stem)
        array = np.ascontiguousarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def shape(self, stem, dims):
        """Add ``dims`` as an int64 constant (a shape for Reshape); return its name."""
        name = self._name(stem)
        array = np.asarray(dims, dtype=np.int64)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, **attributes):
        """Add the operator ``op`` on the tensors ``inputs``; return its output's name."""
        output = self._name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output],
                                                     name=output, **attributes))
        return output


@converter(Dense)
def _dense(layer, graph, x):
    weights = graph.constant("weights", layer.weights)       # (out, in)
    bias = graph.constant("bias", layer.bias)
    return graph.node("Gemm", [x, weights, bias], transB=1)


def _spatial(graph, x, input_shape, op, inputs=(), **attributes):
    """``op`` on the rows ``x`` seen as NCHW images of ``input_shape``, flat again after.

    numrec passes images between components as flat rows of their NCHW values, which is
    what ONNX's Flatten(axis=1) of an NCHW tensor gives.
    """
    images = graph.node("Reshape", [x, graph.shape("shape", (-1, *input_shape))])
    return graph.node("Flatten", [graph.node(op, [images, *inputs], **attributes)], axis=1)


@converter(Conv2D)
def _conv2d(layer, graph, x):
    (top, left) = layer.padding
    return _spatial(graph, x, layer.input_shape, "Conv",
                    [graph.constant("weights", layer.weights),   # (out, in, kh, kw)
                     graph.constant("bias", layer.bias)],
                    kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                    pads=[top, left, top, left])


@converter(MaxPool2D)
def _max_pool2d(layer, graph, x):
    return _spatial(graph, x, layer.input_shape, "MaxPool",
                    kernel_shape=list(layer.size), strides=list(layer.stride))


@converter(Flatten)
@converter(Dropout)     # evaluation mode: the identity
def _identity(layer, graph, x):
    return graph.node("Identity", [x])


@converter(LeakyReLU)
def _leaky_relu(activation, graph, x):
    if graph.dtype == np.float32:
        return graph.node("LeakyRelu", [x], alpha=float(np.float32(activation.alpha)))
    # LeakyRelu's alpha is a float32 attribute, which would change a float64 model's
    # slope (and onnxruntime has no float64 PRelu): x > 0 ? x : alpha x, in float64.
    scaled = graph.node("Mul", [x, graph.constant("alpha", activation.alpha)])
    positive = graph.node("Greater", [x, graph.constant("zero", 0.0)])
    return graph.node("Where", [positive, x, scaled])


def _elementwise(op):
    return lambda activation, graph, x: graph.node(op, [x])


for _cls, _op in ((ReLU, "Relu"), (Sigmoid, "Sigmoid"), (Tanh, "Tanh"),
                  (Identity, "Identity")):
    converter(_cls)(_elementwise(_op))


@converter(Softmax)
def _softmax(activation, graph, x):
    return graph.node("Softmax", [x], axis=1)


@converter(SoftmaxCrossEntropy, LOSS_CONVERTERS)
def _softmax_probabilities(graph, x):
    return graph.node("Softmax", [x], axis=1)


def _import_onnx():
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ImportError(f"ONNX export needs the onnx package: {_INSTALL_HINT}") from None
    return onnx


def to_model_proto(model, *, raw=False):
    """Return ``model`` as an ``onnx.ModelProto`` (checked by ``onnx.checker``).

    Parameters
    ----------
    model : Sequential
    raw : bool, default False
        Output the last component's outputs even where :meth:`~numrec.Sequential.predict`
        reports the loss's probabilities (its ``raw=True``).

    Raises
    ------
    ExportError
        If a component or the loss has no converter (it names the component: its index
        and repr).
    ImportError
        If the onnx package is not installed.
    """
    _check_convertible(model, raw)
    onnx = _import_onnx()
    graph = _Graph(onnx, model.dtype)
    tensor = INPUT
    for component in model.components:
        tensor = CONVERTERS[type(component)](component, graph, tensor)
    if _reports_probabilities(model) and not raw:
        tensor = LOSS_CONVERTERS[type(model.loss)](graph, tensor)
    graph.nodes.append(onnx.helper.make_node("Identity", [tensor], [OUTPUT], name=OUTPUT))
    n_outputs = _n_outputs(model)
    element = onnx.helper.np_dtype_to_tensor_dtype(graph.dtype)
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes, "numrec_sequential",
            [onnx.helper.make_tensor_value_info(INPUT, element, ["batch", model.n_inputs])],
            [onnx.helper.make_tensor_value_info(OUTPUT, element, ["batch", n_outputs])],
            initializer=graph.initializers,
            doc_string=repr(model),
        ),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="numrec",
        producer_version=_version(),
    )
    proto.ir_version = IR_VERSION
    onnx.helper.set_model_props(proto, {
        "numrec.output": "raw" if raw or not _reports_probabilities(model) else "probabilities",
    })
    onnx.checker.check_model(proto)
    return proto


def export(model, path, *, raw=False):
    """Write ``model`` to the ONNX file ``path``, atomically (see :func:`to_model_proto`)."""
    data = to_model_proto(model, raw=raw).SerializeToString()
    with atomic_writer(path) as file:
        file.write(data)


def _check_convertible(model, raw):
    names = ", ".join(cls.__name__ for cls in CONVERTERS)
    for index, component in enumerate(model.components):
        if type(component) not in CONVERTERS:
            written = ("a Python-written component" if _is_python_written(component)
                       else "a component without an ONNX converter")
            raise ExportError(
                f"components[{index}] ({component!r}) is {written} of type "
                f"{type(component).__qualname__}, which ONNX export cannot express; "
                f"the exportable components are {names}"
            )
    if model.n_inputs is None:
        raise ExportError("the model's input size is unknown: its first component "
                          "declares no in_features")
    if not raw and _reports_probabilities(model) and type(model.loss) not in LOSS_CONVERTERS:
        raise ExportError(
            f"the loss {model.loss!r} turns the outputs into probabilities in a way ONNX "
            f"export cannot express; export with raw=True to get the outputs as they are"
        )


def _is_python_written(component):
    return not type(component).__module__.startswith("numrec.")


def _reports_probabilities(model):
    """Whether ``model.predict`` applies ``loss.probabilities`` (see Sequential.predict)."""
    return (model.loss is not None
            and type(model.loss).probabilities is not Loss.probabilities)


def _n_outputs(model):
    return int(model.predict(np.zeros((1, model.n_inputs), dtype=model.dtype),
                             raw=True).shape[1])


def _version():
    from numrec import __version__

    return __version__
