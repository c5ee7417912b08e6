"""``Sequential``: a stack of layers and activations, trained by minibatch gradient descent."""
import contextlib
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import ThreadpoolController

from numrec._core._activations import Activation, LeakyReLU, Sigmoid, Softmax
from numrec._core._layers import Dense, Layer
from numrec._core._losses import MSE, Loss
from numrec._core._optimizers import SGD, Optimizer
from numrec._core._training import (
    FusedTrainer, is_compiled, kernel_problem, plan_problem, plan_stages, thread_plan,
)
from numrec._core._validation import (
    as_rng, as_shape, check_array, check_finite_number, check_positive_int,
)
from numrec._loops import FusedEpoch, PythonEpoch, SegmentedEpoch, checked_output, one_hot


class DivergedError(FloatingPointError):
    """Training produced a NaN or infinite loss (usually: the learning rate is too high)."""


class TrainingWarning(UserWarning):
    """Training ran to its end but the network did not learn (see ``History.stalled``)."""


#: A validation accuracy within this of the most frequent class's share is chance level.
CHANCE_MARGIN = 0.02


@dataclass
class History:
    """What :meth:`Sequential.fit` measured, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Mean training loss over the epoch's batches (with sample weights, the mean of
        :math:`w_i l_i` over the samples).
    accuracy : list of float
        Fraction of the epoch's training samples whose largest output was at their
        label (the argmax of their target row), each counted in its batch before that
        batch's update, as Keras reports it (unweighted; in training mode).
    val_loss : list of float
        Mean loss on the validation data after the epoch, in evaluation mode and
        unweighted (empty without validation data).
    val_accuracy : list of float
        Accuracy on the validation data after the epoch (empty without validation data).
    seconds : list of float
        Wall-clock seconds of each epoch, including its validation pass.
    reached_target : bool
        True if training stopped because validation accuracy exceeded ``target_accuracy``.
    fused : bool
        True if the whole epochs ran in the compiled training loop.
    lr : list of float
        The optimizer's learning rate in each epoch (when it has one, ``lr``).
    stopped_early : bool
        True if a callback stopped training (:mod:`numrec.callbacks`).
    stalled : bool
        True if the last validation accuracy is no better (within
        :data:`CHANCE_MARGIN`) than always answering the most frequent class: the
        network did not learn, and :meth:`Sequential.fit` warned with a
        :class:`TrainingWarning`.
    loop : str
        Which loop ran the epochs: ``"compiled"`` (every component, the loss and the
        optimizer compiled), ``"segmented"`` (the compiled parts compiled, the
        Python-written ones called per batch) or ``"python"`` (``fused=False``).
    """

    loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    reached_target: bool = False
    fused: bool = False
    loop: str = "compiled"
    stalled: bool = False
    lr: list = field(default_factory=list)
    stopped_early: bool = False
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)

    @property
    def epochs(self):
        """Number of epochs run."""
        return len(self.loss)


class Sequential:
    """A model that applies its components one after the other.

    Parameters
    ----------
    components : list of Layer and Activation
        For example ``[Dense(784, 256), LeakyReLU(0.2), Dense(256, 10), Sigmoid()]``.
        Compiled and Python-written components mix freely.  When every component, the
        loss and the optimizer are compiled built-ins, :meth:`fit` runs whole epochs in
        compiled code; otherwise the compiled parts still run compiled and only the
        Python-written ones are called per batch (the segmented loop), with the same
        numbers.
    loss : Loss, optional
        The loss the model is trained with (see :attr:`loss`).
    input_shape : tuple of int, optional
        The shape of one sample, without the batch axis: ``(784,)`` for flat rows,
        ``(1, 28, 28)`` for grey images as ``(channels, height, width)`` (PyTorch's
        layout).  Defaults to ``(in_features,)`` of the first layer when it has them (a
        :class:`Dense`); a first layer that takes its sizes from its input (a
        convolution) needs it.  Each layer is built for the output shape of the one
        before it (:meth:`Layer.build <numrec.Layer.build>`), so that a mismatch is
        reported here, naming both layers and both shapes.

    Attributes
    ----------
    components : list of Layer and Activation
        The components, in order (the list given to the constructor).
    input_shape : tuple of int or None
        The shape of one input sample (None when the first layer does not say and none
        was given); model files keep it.
    dtype : numpy.dtype
        The parameters' dtype, float32 or float64 (float32 without any parameters).
    training : bool
        The mode set by :meth:`train` and :meth:`eval` (True, training mode, to begin
        with), which every layer's :attr:`~numrec.Layer.training` follows.
    loss : Loss or None
        The loss of the last :meth:`fit` (or given to the constructor): :meth:`fit` and
        :meth:`evaluate` use it when not given another, :meth:`predict` reports
        ``loss.probabilities(output)`` (the softmax of the logits for
        :class:`SoftmaxCrossEntropy`, the outputs themselves for the other built-in
        losses), and model files keep it when it is a built-in.  None until then
        (:class:`MSE` is the default).

    Notes
    -----
    Inputs are batch first: ``(n_samples, *input_shape)``, or flat rows
    ``(n_samples, prod(input_shape))`` (an image's values channel by channel, row by
    row), and for an ``input_shape`` of ``(1, height, width)`` also
    ``(n_samples, height, width)`` (MNIST's images as loaded).  Every entry point accepts
    floating-point arrays (cast to the model's dtype) and ``uint8`` arrays, which are read
    as pixel intensities and scaled by 1/255.  Between components every batch travels as
    rows ``(m, prod(shape))``.
    """

    def __init__(self, components, *, loss=None, input_shape=None):
        components = list(components)
        if not components:
            raise ValueError("components must hold at least one layer")
        for index, component in enumerate(components):
            if not isinstance(component, (Layer, Activation)):
                raise TypeError(
                    f"components[{index}] must be a Layer or an Activation, "
                    f"got {type(component).__name__}"
                )
        self.components = components
        self.loss = None if loss is None else _check_component(loss, "loss", Loss)
        self.dtype = self._common_dtype()
        self.input_shape = self._first_shape(input_shape)
        self._shapes = self._build_shapes()
        self._forward_done = False
        self.training = True

    # --- modes --------------------------------------------------------------------------

    def train(self, mode=True):
        """Put the model in training mode (``mode=True``) or evaluation mode; return it.

        As PyTorch's ``Module.train``: it sets :attr:`training` and every layer's
        :attr:`~numrec.Layer.training`, which layers such as dropout read in
        :meth:`forward`.  :meth:`fit` trains in training mode and :meth:`predict` and
        :meth:`evaluate` run in evaluation mode whatever the mode; each leaves the mode
        as it found it.
        """
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode must be True or False, got {mode!r}")
        self.training = bool(mode)
        for component in self.components:
            if isinstance(component, Layer):
                component.training = self.training
        return self

    def eval(self):
        """Put the model in evaluation mode (``train(False)``); return it."""
        return self.train(False)

    @contextlib.contextmanager
    def _mode(self, training):
        """Run the ``with`` block in training mode or not, then restore every mode."""
        layers = [c for c in self.components if isinstance(c, Layer)]
        previous = self.training, [layer.training for layer in layers]
        self.train(training)
        try:
            yield
        finally:
            self.training = previous[0]
            for layer, mode in zip(layers, previous[1]):
                layer.training = mode

    def _common_dtype(self):
        dtypes = {param.dtype for param in self.parameters()}
        if len(dtypes) > 1:
            raise TypeError(
                "all layers must share one dtype, got " + ", ".join(sorted(map(str, dtypes)))
            )
        return dtypes.pop() if dtypes else np.dtype(np.float32)

    def _first_shape(self, input_shape):
        """The input shape given, else ``(in_features,)`` of the first layer, or None."""
        if input_shape is not None:
            return as_shape(input_shape)
        first = self.components[0]
        n_in = getattr(first, "in_features", None)
        if n_in is not None:
            return (int(n_in),)
        if isinstance(first, Layer) and is_compiled(first):
            raise ValueError(
                f"components[0] ({first!r}) takes its size from its input: give the "
                f"shape of one sample, as Sequential([...], input_shape=(1, 28, 28)) for "
                f"grey 28 x 28 images"
            )
        return None  # a Python-written first layer that does not say

    def _build_shapes(self):
        """Build each layer for the shape before it; return each component's output
        shape per sample (None after a layer that cannot say)."""
        shape, shapes, before = self.input_shape, [], None
        for index, component in enumerate(self.components):
            if shape is not None and isinstance(component, Layer):
                try:
                    shape = component.build(shape)
                except ValueError as error:
                    raise ValueError(self._misfit(index, error, before, shape)) from None
                shape = None if shape is None else tuple(shape)
            shapes.append(shape)
            if isinstance(component, Layer):
                before = index
        return shapes

    def _misfit(self, index, error, before, shape):
        """The message for components[index], which cannot take ``shape``."""
        component = self.components[index]
        error = str(error)
        if error.startswith(repr(component)):  # the layer names itself: once is enough
            error = error[len(repr(component)):].lstrip(" :")
        given = f"{shape[0]}" if len(shape) == 1 else f"shape {shape}"
        if before is None:
            return (f"components[{index}] ({component!r}) {error} but the model's "
                    f"input_shape is {shape}")
        return (f"components[{index}] ({component!r}) {error} but the layer before it gives "
                f"{given}: components[{before}] ({self.components[before]!r}) outputs "
                f"shape {shape}")

    def __repr__(self):
        inner = ",\n    ".join(repr(component) for component in self.components)
        return f"Sequential([\n    {inner},\n])"

    def summary(self, *, file=None):
        """Print a table of the components: output shape and parameter count of each.

        The shapes are those of one sample (``None`` stands for the batch), found by
        running one sample of zeros through the model when its input size is known.

        Parameters
        ----------
        file : file-like, optional
            Where to print (default: standard output).
        """
        print(self._summary_text(), file=file if file is not None else sys.stdout)

    def _summary_text(self):
        shapes = self._output_shapes()
        rows = [("component", "output shape", "parameters")]
        for index, (component, shape) in enumerate(zip(self.components, shapes)):
            count = sum(param.size for param in component.parameters()) \
                if isinstance(component, Layer) else 0
            shown = "?" if shape is None else str((None, *shape))
            rows.append((f"{index}: {component!r}", shown, f"{count:,}"))
        widths = [max(len(row[k]) for row in rows) for k in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
        total = sum(param.size for param in self.parameters())
        rule = "-" * len(lines[0])
        return "\n".join([lines[0], rule, *lines[1:], rule,
                          f"{total:,} parameters ({np.dtype(self.dtype).name}, "
                          f"{total * np.dtype(self.dtype).itemsize:,} bytes)"])

    def _output_shapes(self):
        """Each component's output shape for one sample (None where it cannot be known):
        the built shapes, else those of one sample of zeros run through the model in
        evaluation mode."""
        if None not in self._shapes or self.n_inputs is None:
            return list(self._shapes)
        out, shapes = np.zeros((1, self.n_inputs), dtype=self.dtype), []
        with self._mode(False):
            for known, component in zip(self._shapes, self.components):
                out = component.forward(out)
                shapes.append(known if known is not None else tuple(np.shape(out)[1:]))
        return shapes

    @property
    def n_inputs(self):
        """Values per input sample (the product of :attr:`input_shape`), or None."""
        return None if self.input_shape is None else math.prod(self.input_shape)

    @property
    def output_shape(self):
        """The shape of one output sample, or None where it cannot be known before a
        forward pass."""
        return self._shapes[-1]

    def parameters(self):
        """All parameter arrays, layer by layer (for a Dense: weights, then bias)."""
        return [param for c in self.components if isinstance(c, Layer) for param in c.parameters()]

    def gradients(self):
        """Gradient arrays, in the order of :meth:`parameters`."""
        return [grad for c in self.components if isinstance(c, Layer) for grad in c.gradients()]

    # --- forward and backward -----------------------------------------------------------

    def _as_input(self, x, name="x"):
        """Check ``x`` and return it as a C-contiguous array of the model's dtype."""
        x = _check_inputs(x, name, self.input_shape)
        if x.dtype == np.uint8:
            return np.multiply(x, 1 / 255, dtype=self.dtype)
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x):
        """Return the model's output for the batch ``x`` and remember it for :meth:`backward`.

        Parameters
        ----------
        x : ndarray, shape (n_samples, n_inputs)

        Returns
        -------
        ndarray, shape (n_samples, n_outputs)
        """
        out = self._as_input(x)
        for component in self.components:
            out = component.forward_pass(out)
        self._forward_done = True
        return out

    def backward(self, grad_output):
        """Back-propagate ``dL/d output`` through the last :meth:`forward`.

        Fills every layer's gradients (``grad_weights``, ``grad_bias`` for a Dense) and
        returns ``dL/dx``, shaped like the input.
        """
        if not self._forward_done:
            raise RuntimeError("Sequential.backward called before forward")
        grad = grad_output
        for component in reversed(self.components):
            grad = component.backward_pass(grad)
        return grad

    def predict(self, x, *, batch_size=1024, raw=False):
        """Return the outputs for ``x``, in evaluation mode.

        For a model trained with a loss on logits (:class:`SoftmaxCrossEntropy`), the
        outputs are that loss's probabilities (``self.loss.probabilities``); with
        ``raw=True``, or without such a loss, the last component's outputs as they are.

        Parameters
        ----------
        x : ndarray, shape ``(n_samples, *input_shape)`` or (n_samples, n_inputs)
            Floats, or uint8 pixels (each read as pixel / 255).
        batch_size : int, default 1024
            Rows per forward pass of a model with Python-written components, run layer by
            layer.  A model of compiled components runs in the compiled engine, which
            takes 1024 rows at a time whatever ``batch_size`` (each row's outputs do not
            depend on it).
        raw : bool, default False

        Returns
        -------
        ndarray, shape (n_samples, n_outputs)

        Notes
        -----
        When every component is compiled for the model's dtype, the outputs come from
        the compiled forward pass of :meth:`fit`'s test pass, kept on the model between
        calls: inputs of up to 16 rows in one call into C on the calling thread (the
        low-latency path for one sample), longer ones 1024 rows at a time on the
        threads, as the test pass runs them (docs/architecture.rst, "Inference").
        """
        output = self._outputs(x, batch_size)
        if raw or self.loss is None:
            return output
        return self.loss.probabilities(output)

    def _outputs(self, x, batch_size):
        """The last component's outputs for ``x``, in evaluation mode: from the compiled
        engine (:meth:`_engine_outputs`) when it runs the whole model, else layer by
        layer through Python, ``batch_size`` rows at a time."""
        batch_size = check_positive_int(batch_size, "batch_size")
        rows = _check_inputs(x, "x", self.input_shape, finite=False)
        output = self._engine_outputs(rows)
        if output is not None:
            return output
        x = _check_inputs(x, "x", self.input_shape)
        with self._mode(False):
            outputs = [self._predict_batch(x[i:i + batch_size])
                       for i in range(0, max(len(x), 1), batch_size)]
        return np.concatenate(outputs)

    # --- the compiled inference engine ----------------------------------------------------

    def _engine_outputs(self, rows):
        """The outputs for ``rows`` (checked by :func:`_check_inputs` but for
        finiteness) from the compiled engine, or None when it cannot run the model.

        Raises the ``ValueError`` of :func:`_check_inputs` for NaN or infinity, found as
        the engine copies the rows into its buffer (uint8 pixels and rows of the model's
        dtype go in as they are; other floats are checked, then cast).
        """
        if len(rows) == 0:
            return None
        kind = rows.dtype
        cast = kind is not _UINT8 and kind is not self.dtype and kind != self.dtype \
            and kind != np.uint8
        if cast:
            rows = check_array(rows, "x", shape=(None, None))
            with np.errstate(over="ignore"):  # (then the layer-by-layer path's error)
                rows = np.ascontiguousarray(rows, dtype=self.dtype)
        engine = self._inference_engine(rows)
        if engine is None:
            return None
        output = np.empty((len(rows), engine.n_outputs), dtype=self.dtype)
        _, _, layers, _, lock = self._engines
        with lock:  # one call at a time in the engine's buffers
            modes = [layer.training for layer in layers]
            try:  # evaluation mode for the kernels (as _engine_mode, without a generator)
                for layer in layers:
                    layer.training = False
                finite = engine.predict(rows, output)
            finally:
                for layer, mode in zip(layers, modes):
                    layer.training = mode
        if not finite:
            if cast:  # finite before the cast, beyond the dtype's range after it
                return None
            raise ValueError("x contains NaN or infinity")
        return output

    def _inference_engine(self, rows):
        """The compiled engine for ``rows``: a :class:`FusedTrainer` without a loss or
        an optimizer, or None if a component is not compiled for the model's dtype.

        Engines are kept on the model and reused: the parameters are updated in place
        (:meth:`fit`, ``layer.weights = ...``), so that the kernels' pointers stay valid,
        and the engines are made again when the components, or their sizes, change.
        Inputs of more than 16 rows run on an engine planned for them as
        :meth:`fit`'s test pass plans its trainer (:func:`thread_plan` for 1024 rows:
        the threads share the large layers, or BLAS threads each product); shorter ones
        on any engine, which runs them on the calling thread.
        """
        structure = tuple([(c, getattr(c, "in_features", None), getattr(c, "out_features", None))
                           for c in self.components])
        cache = self.__dict__.get("_engines")
        if cache is None or cache[0] != structure:
            stages = plan_stages(self.components, self.dtype)
            layers = [c for c in self.components if isinstance(c, Layer)]
            cache = self._engines = (structure, stages, layers, {}, threading.Lock())
        stages, engines = cache[1], cache[3]
        if stages is None:
            return None
        if len(rows) <= _SMALL_ROWS and engines:
            return next(iter(engines.values()))
        split, _, exact = thread_plan(stages, self.dtype, _EVAL_ROWS, rows, _default_threads(),
                                     training=False)
        if (split, exact) not in engines:
            engines[split, exact] = FusedTrainer(stages, None, None, _EVAL_ROWS, self.dtype,
                                                 split, exact)
        return engines[split, exact]

    @contextlib.contextmanager
    def _engine_mode(self):
        """Evaluation mode for the engine's kernels: every layer's
        :attr:`~numrec.Layer.training` False inside the block, then as it was (the
        lighter form of ``_mode(False)`` for a model that the engine runs)."""
        layers = self._engines[2]
        modes = [layer.training for layer in layers]
        if not any(modes):
            yield
            return
        for layer in layers:
            layer.training = False
        try:
            yield
        finally:
            for layer, mode in zip(layers, modes):
                layer.training = mode

    def __getstate__(self):
        """The attributes without the cached engines (pickling, ``copy.deepcopy``)."""
        state = dict(self.__dict__)
        state.pop("_engines", None)
        return state

    def _predict_batch(self, x):
        out = self._as_input(x)
        for index, component in enumerate(self.components):
            out = component.forward(out)
            if not is_compiled(component):  # name the component, not the one after it
                following = self.components[index + 1:index + 2]
                width = getattr(following[0], "in_features", None) if following else None
                out = checked_output(out, index, component, len(x), width, self.dtype)
        return out

    def predict_proba(self, x, *, batch_size=1024):
        """Return class probabilities for ``x``: rows of non-negative values summing to 1.

        The outputs of :meth:`predict` when they are a softmax (a :class:`Softmax` last,
        or a loss on logits such as :class:`SoftmaxCrossEntropy`); otherwise (sigmoid
        outputs, say) the outputs, clipped at 0, divided by their row's sum (a uniform
        row where that sum is 0).

        Returns
        -------
        ndarray, shape (n_samples, n_outputs)
        """
        output = self.predict(x, batch_size=batch_size)
        if self.outputs_probabilities:
            return output
        output = np.clip(output, 0, None)
        sums = output.sum(axis=1, keepdims=True)
        return np.divide(output, sums, out=np.full_like(output, 1 / output.shape[1]),
                         where=sums > 0)

    @property
    def outputs_probabilities(self):
        """Whether :meth:`predict` gives a softmax: a :class:`Softmax` last, or a loss
        that reads the outputs as logits (:meth:`Loss.probabilities` of its own)."""
        return (isinstance(self.components[-1], Softmax)
                or (self.loss is not None
                    and type(self.loss).probabilities is not Loss.probabilities))

    def __call__(self, x):
        """``model(x)`` is :meth:`predict`."""
        return self.predict(x)

    def predict_classes(self, x, *, batch_size=1024):
        """Return the index of the largest output for each row of ``x`` (int64)."""
        return self._outputs(x, batch_size).argmax(axis=1)

    def evaluate(self, x, y, *, loss=None, batch_size=1024):
        """Return ``{"loss": ..., "accuracy": ...}`` on ``x`` with labels or targets ``y``.

        ``y`` is either integer labels ``(n_samples,)`` or targets
        ``(n_samples, n_outputs)`` (accuracy then compares argmaxes).  ``loss`` defaults
        to the model's :attr:`loss`, else :class:`MSE`, against one-hot labels; it sees
        the raw outputs (logits for :class:`SoftmaxCrossEntropy`).

        With compiled components and a compiled loss this is :meth:`fit`'s test pass:
        the loss summed by the loss's kernel over the samples, divided by their number
        (after :meth:`fit`, the same bits as the last ``val_loss`` and ``val_accuracy``
        on the same data when both planned the same threads).  ``batch_size`` is the
        rows per forward pass of the layer-by-layer path only (see :meth:`predict`).
        """
        loss = _check_component(loss if loss is not None else self.loss or MSE(), "loss",
                                Loss)
        if isinstance(x, np.ndarray) and len(x) == 0:
            raise ValueError("x must hold at least one sample")
        result = self._engine_evaluate(x, y, loss, batch_size)
        if result is not None:
            return result
        output = self._outputs(x, batch_size)
        targets, labels = _prepare_targets(y, len(output), output.shape[1], self.dtype, "y")
        if targets is None:
            targets = one_hot(labels, output.shape[1], self.dtype)
        return {
            "loss": float(loss.value(output, targets)),
            "accuracy": float(np.mean(output.argmax(axis=1) == labels)),
        }

    def _engine_evaluate(self, x, y, loss, batch_size):
        """:meth:`evaluate` in the compiled engine with its compiled loss: the same pass,
        loss and count as :meth:`fit`'s test pass (the summed loss over the samples); or
        None when the engine cannot run the model or the loss."""
        batch_size = check_positive_int(batch_size, "batch_size")
        rows = _check_inputs(x, "x", self.input_shape)
        if rows.dtype != np.uint8:
            rows = np.ascontiguousarray(rows, dtype=self.dtype)
        engine = self._inference_engine(rows)
        if engine is None or kernel_problem(loss, self.dtype) is not None:
            return None
        targets, labels = _prepare_targets(y, len(rows), engine.n_outputs, self.dtype, "y")
        with self._engines[4], self._engine_mode():
            total, correct = engine.evaluate(rows, labels if targets is None else targets,
                                             loss=loss)
        return {"loss": total / len(rows), "accuracy": correct / len(rows)}

    def save(self, path):
        """Save the model to one ``.npz`` file: its architecture and its parameters.

        The file is written at exactly ``path`` (no suffix is added; ``.npz`` is the
        conventional one) and atomically: an existing file is only replaced once the new
        one is complete.  Load it with :func:`numrec.load`.  Models made of built-in
        components can be saved, and of components of your own registered with
        :func:`numrec.registry.register_custom` (see :mod:`numrec.serialization`).

        A path ending in ``.txt`` writes the seed's text format instead (see
        :mod:`numrec.seed_format`), which holds Dense layers with one LeakyReLU slope
        after every hidden layer and Sigmoid, Softmax or nothing after the last.

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        TypeError
            If a component is neither a built-in nor registered (for example a
            Python-written layer).
        ValueError
            If a parameter is not finite, or for a ``.txt`` path if the seed's format
            cannot describe the model (the message says why).
        """
        from numrec.serialization import save_model

        save_model(self, path)

    def to_onnx(self, path, *, raw=False):
        """Write the model to the ONNX file ``path`` for onnxruntime (see :doc:`onnx`).

        The file is written atomically.  The graph's output is what :meth:`predict`
        returns (probabilities for a model trained with :class:`SoftmaxCrossEntropy`),
        or with ``raw=True`` the last component's outputs.  Needs the ``onnx`` package
        (``pip install ".[onnx]"`` in numrec's source folder).

        Raises
        ------
        numrec.onnx_export.ExportError
            If a component has no ONNX form (a Python-written one, say); the message
            names it.
        """
        from numrec.onnx_export import export

        export(self, path, raw=raw)

    # --- training -----------------------------------------------------------------------

    #: The data the model was trained on, as :meth:`fit` records it with ``dataset=``: a
    #: dict ``{"name": str, "input_shape": [int, ...], "n_classes": int, "class_names":
    #: [str, ...] or None, "source": str or None}`` (``source``: where the data was
    #: read from, None for a copy bundled with numrec), or None if unknown.  Model files
    #: keep it; ``numrec evaluate`` evaluates on that data by default.
    dataset = None

    def fit(self, x, y, *, epochs=1, batch_size=32, loss=None, optimizer=None,
            validation_data=None, seed=None, shuffle=True, target_accuracy=None,
            on_epoch=None, on_progress=None, callbacks=None, fused=None, threads=None,
            validation_split=None, sample_weight=None, class_weight=None, verbose=0,
            dataset=None):
        """Train the model by minibatch gradient descent.

        Parameters
        ----------
        x : ndarray, shape (n_samples, n_inputs) or ``(n_samples, *input_shape)``
            Training inputs: floats, or uint8 pixels (scaled by 1/255 batch by batch, so
            the data set stays in memory as bytes); images as the model's
            :attr:`input_shape` or flattened to rows (see the Notes of the class).
        y : ndarray, shape (n_samples,) or (n_samples, n_outputs)
            Integer class labels (trained against one-hot targets) or target rows.
        epochs : int, default 1
            Maximum number of passes over the data.
        batch_size : int, default 32
        loss : Loss, optional
            Default: the model's :attr:`loss`, else :class:`MSE`.  Becomes the model's
            :attr:`loss`.
        optimizer : Optimizer, default SGD(lr=0.5)
        validation_data : (x_val, y_val), optional
            Evaluated after every epoch; ``y_val`` as labels or target rows.
        validation_split : float, optional
            A fraction between 0 and 1: the last ``n - int(n * (1 - validation_split))``
            samples of ``x`` and ``y`` (taken before any shuffling, as Keras does) are
            held out as the validation data, and training uses the others.  Not together
            with ``validation_data``.
        sample_weight : array_like, shape (n_samples,), optional
            A finite weight :math:`w_i \\ge 0` per sample: a batch of m samples is
            trained on the loss :math:`\\frac{1}{m} \\sum_i w_i \\, l_i` (Keras'
            definition: the weights are not renormalised), so each sample's gradient is
            multiplied by its weight.  Unweighted training is ``w_i = 1``.
        class_weight : dict, optional
            ``{class: weight}``: each sample weighs its label's weight (classes not
            named weigh 1); multiplied into ``sample_weight`` when both are given.
        verbose : int or bool, default 0
            1 (or True) prints one line per epoch on standard error: the training loss
            and accuracy, the validation loss and accuracy, and the seconds.
        dataset : dict, optional
            What the data is, recorded as :attr:`dataset`: ``{"name": "Fashion-MNIST"}``
            at least, optionally ``"class_names"`` (one string per output),
            ``"source"`` (where it was read from) and ``"input_shape"`` (the shape of
            one sample, e.g. ``[28, 28]`` for flattened images; by default ``x``'s).
        seed : int or numpy.random.Generator, optional
            Shuffles the samples each epoch; the same seed gives the same result.  An
            int starts a new Generator at each call, so a loop of
            ``fit(..., epochs=1, seed=0)`` visits the samples in the same order every
            time: give every call the same ``numpy.random.default_rng(0)`` to go on
            with its sequence (or use ``epochs`` and callbacks).
        shuffle : bool, default True
            Visit the samples in a new random order each epoch (``rng.permutation``);
            False keeps their order, as a PyTorch ``DataLoader`` without shuffling.
        target_accuracy : float, optional
            Stop after the first epoch whose validation accuracy exceeds this fraction
            (needs ``validation_data``).
        on_epoch : callable, optional
            Called after each epoch as ``on_epoch(epoch, history)`` (epoch counts from 1).
        callbacks : list of numrec.callbacks.Callback, optional
            Run between epochs: early stopping, checkpoints, learning-rate schedules or
            your own (see :mod:`numrec.callbacks`).
        on_progress : callable, optional
            Called as ``on_progress(samples_done, samples_total)`` during each epoch.
            In the compiled loop the model's parameter arrays may lag behind until the
            epoch's training ends; read them in ``on_epoch``, not here.
        fused : bool, optional
            ``None`` picks the compiled loop when every component, the loss and the
            optimizer are compiled, and otherwise the segmented loop, which keeps the
            compiled parts compiled and calls the Python-written ones per batch (the same
            numbers); ``False`` forces the per-batch Python loop through every
            component; ``True`` raises ``ValueError``, naming the component, if the
            compiled loop cannot run the whole model.
        threads : int, optional
            Threads of the compiled loop (default: the cores this process may use).  Up
            to the batch size each large layer allows (128 for Dense:
            ``Layer.unit_shares()``), and at any batch size for inputs that are mostly
            zeros (at most 35 % nonzero, as MNIST's pixels), each large
            layer's output units are shared between the threads, so that each thread
            keeps its share of the weights in its own core's cache; otherwise BLAS uses
            the threads within each matrix product.  Results are bit-identical from run
            to run for a given seed and thread count (and, in float32 on processors with
            AVX2 and FMA, up to batch 128 or with such inputs, whatever the thread
            count).

        Returns
        -------
        History

        Raises
        ------
        DivergedError
            If the loss becomes NaN or infinite.

        Notes
        -----
        With plain :class:`SGD`, the compiled loop folds each update into the matrix
        product that computes the gradient, so ``grad_weights`` and ``grad_bias`` do
        not hold the gradients afterwards (a small layer above a large one may use
        ``grad_weights`` as scratch space for its deferred update); call
        :meth:`backward` to inspect gradients.  A stateful
        optimizer (momentum) updates each thread's share of the parameters after the
        layer has written that share of the gradients.
        """
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        loss = _check_component(loss if loss is not None else self.loss or MSE(), "loss",
                                Loss)
        optimizer = _check_component(
            optimizer if optimizer is not None else SGD(), "optimizer", Optimizer
        )
        x = _check_inputs(x, "x", self.input_shape)
        if x.dtype != np.uint8:
            x = np.ascontiguousarray(x, dtype=self.dtype)
        if len(x) == 0:
            raise ValueError("x must hold at least one sample")
        n_outputs = self._fit_output_width(x[:batch_size])
        targets, labels = _prepare_targets(y, len(x), n_outputs, self.dtype, "y")
        train_targets = labels if y.ndim == 1 else targets
        weights = _sample_weights(sample_weight, class_weight, labels, n_outputs)
        if dataset is not None:
            dataset = _fit_dataset(dataset, x.shape[1:], n_outputs)
        verbose = _check_verbose(verbose)
        if validation_split is not None:
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            x, train_targets, labels, weights, validation = _split_off(
                validation_split, x, train_targets, labels, weights)
        else:
            validation = self._check_validation(validation_data, n_outputs)
        if target_accuracy is not None:
            target_accuracy = check_finite_number(target_accuracy, "target_accuracy")
            if not 0 < target_accuracy < 1:
                raise ValueError(f"target_accuracy is a fraction between 0 and 1 (0.96 for "
                                 f"96 %), got {target_accuracy!r}")
            if validation is None:
                raise ValueError("target_accuracy needs validation_data")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        rng = as_rng(seed) if shuffle else None
        threads = (check_positive_int(threads, "threads") if threads is not None
                   else _default_threads())

        self.loss = loss
        if dataset is not None:
            self.dataset = dataset
        optimizer.prepare(self.parameters())
        run_epoch, blas_threads = self._epoch_runner(fused, x, loss, optimizer, batch_size,
                                                     threads)
        history = History(fused=isinstance(run_epoch, FusedEpoch),
                          loop=_LOOP_NAMES[type(run_epoch)])
        callbacks = _check_callbacks(callbacks, self, optimizer)
        with _blas_threads(blas_threads), self._mode(True):
            for callback in callbacks:
                callback.on_train_begin(history)
            try:
                _run_epochs(run_epoch, history, x, train_targets, validation, epochs, rng,
                            target_accuracy, on_epoch, on_progress, callbacks, optimizer,
                            self._mode, weights, verbose)
            finally:
                for callback in callbacks:
                    callback.on_train_end(history)
        if validation is not None:
            _check_learning(history, validation[1])
        return history

    def _epoch_runner(self, fused, x, loss, optimizer, batch_size, threads):
        """The epoch loop for ``fit`` and the BLAS threads to run it with (None: as set).

        All compiled: the compiled loop.  Otherwise the segmented loop, unless
        ``fused=False`` asks for the Python loop or ``fused=True`` cannot be honoured.
        """
        problem = self._compiled_problem(loss, optimizer)
        if fused and problem is not None:
            raise ValueError(f"fused=True needs a model, loss and optimizer that the "
                             f"compiled loop runs entirely: {problem}")
        if fused is False:
            return PythonEpoch(self, loss, optimizer, batch_size), None
        if problem is None:
            stages = plan_stages(self.components, self.dtype)
            split, blas_threads, exact = thread_plan(stages, self.dtype, batch_size, x,
                                                     threads)
            trainer = FusedTrainer(stages, loss, optimizer, batch_size, self.dtype, split,
                                   exact)
            return FusedEpoch(trainer), blas_threads
        segmented = SegmentedEpoch(self, loss, optimizer, batch_size, x, threads)
        return segmented, segmented.blas_threads

    def _compiled_problem(self, loss, optimizer):
        """Why the compiled loop cannot run this model with ``loss`` and ``optimizer``."""
        problem = plan_problem(self.components, self.dtype)
        if problem is not None:
            return problem
        for name, component in (("loss", loss), ("optimizer", optimizer)):
            problem = kernel_problem(component, self.dtype)
            if problem is not None:
                return f"{name}: {problem}"
        return None

    def _fit_output_width(self, batch):
        """Outputs per sample of a model about to train on batches like ``batch``.

        A model of compiled components knows it from its built shapes.  Otherwise one
        batch runs through the components as fit will run it, so that a Python
        component's error shows the user's batch shape.  (Running it for compiled
        components would cost a product of a whole batch, and it would wake BLAS's
        thread team, whose spinning then competes with the training threads.)
        """
        shape = self.output_shape
        if (shape is not None and len(shape) == 1
                and all(is_compiled(component) for component in self.components)):
            return shape[0]
        with self._mode(False):  # a batch as fit runs it
            return self._predict_batch(batch).shape[1]

    def _check_validation(self, validation_data, n_outputs):
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = validation_data
        x_val = _check_inputs(x_val, "x_val", self.input_shape)
        if x_val.dtype != np.uint8:
            x_val = np.ascontiguousarray(x_val, dtype=self.dtype)
        targets, labels = _prepare_targets(y_val, len(x_val), n_outputs, self.dtype, "y_val")
        return x_val, labels, (labels if targets is None else targets)


#: Rows of each forward pass of the engine (FusedTrainer's evaluation rows), and the
#: longest input it runs on the calling thread alone (FusedTrainer.predict).
_EVAL_ROWS = 1024
_SMALL_ROWS = 16
_UINT8 = np.dtype(np.uint8)

_LOOP_NAMES = {FusedEpoch: "compiled", SegmentedEpoch: "segmented", PythonEpoch: "python"}


def _run_epochs(run_epoch, history, x, targets, validation, epochs, rng, target_accuracy,
                on_epoch, on_progress, callbacks, optimizer, mode, weights=None, verbose=0):
    """The epoch loop of :meth:`Sequential.fit`, appending to ``history``.

    ``mode(training)`` is the model's context manager for its training mode;
    ``validation`` is ``(x_val, labels, targets)`` or None.
    """
    for epoch in range(1, epochs + 1):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        if hasattr(optimizer, "lr"):
            history.lr.append(float(optimizer.lr))
        start = time.perf_counter()
        order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
        total, correct = run_epoch.train(x, targets, order, on_progress, weights)
        mean_loss = total / len(x)
        if not math.isfinite(mean_loss):
            raise DivergedError(
                f"the training loss became {mean_loss} in epoch {epoch}: "
                f"try a lower learning rate"
            )
        history.loss.append(mean_loss)
        history.accuracy.append(correct / len(x))
        if validation is not None:
            with mode(False):
                _validate(run_epoch, history, validation)
        history.seconds.append(time.perf_counter() - start)
        if verbose:
            print(_epoch_line(epoch, epochs, history), file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch, history)
        stops = [bool(callback.on_epoch_end(epoch, history)) for callback in callbacks]
        if any(stops):
            history.stopped_early = True
            return
        if target_accuracy is not None and history.val_accuracy[-1] > target_accuracy:
            history.reached_target = True
            return


def _validate(run_epoch, history, validation):
    """Append the validation loss and accuracy of one pass over ``validation``."""
    x_val, labels, targets = validation
    total, correct = run_epoch.validate(x_val, targets) if len(labels) else (0.0, 0)
    history.val_loss.append(total / len(labels) if len(labels) else 0.0)
    history.val_accuracy.append(correct / len(labels) if len(labels) else 0.0)


def _epoch_line(epoch, epochs, history):
    """The line ``fit(verbose=1)`` prints after an epoch."""
    width = len(str(epochs))
    text = (f"epoch {epoch:>{width}}/{epochs}  loss {history.loss[-1]:.5f}  "
            f"accuracy {100 * history.accuracy[-1]:6.2f} %")
    if len(history.val_loss) == epoch:
        text += (f"  val_loss {history.val_loss[-1]:.5f}  "
                 f"val_accuracy {100 * history.val_accuracy[-1]:6.2f} %")
    return text + f"  {history.seconds[-1]:6.2f} s"


def _check_verbose(verbose):
    if isinstance(verbose, (int, np.integer, np.bool_)) and verbose in (0, 1):
        return int(verbose)
    raise ValueError(f"verbose must be 0, 1, False or True, got {verbose!r}")


def _split_off(fraction, x, targets, labels, weights):
    """Hold out the last part of the data, as ``fit(validation_split=fraction)``.

    Returns ``(x, targets, labels, weights, validation)`` with the first
    ``int(n * (1 - fraction))`` samples for training and ``validation`` as
    :meth:`Sequential._check_validation` gives it.
    """
    if isinstance(fraction, (bool, np.bool_)):
        raise TypeError(f"validation_split must be a fraction, got {fraction!r}")
    fraction = check_finite_number(fraction, "validation_split")
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split is a fraction between 0 and 1 (0.1 holds out "
                         f"the last 10 % of the samples), got {fraction!r}")
    n = len(x)
    split = int(n * (1 - fraction))
    if split == 0 or split == n:
        raise ValueError(f"validation_split={fraction!r} of {n} samples leaves "
                         f"{'no training' if split == 0 else 'no validation'} samples")
    validation = (x[split:], labels[split:], targets[split:])
    return (x[:split], targets[:split], labels[:split],
            None if weights is None else weights[:split], validation)


def _sample_weights(sample_weight, class_weight, labels, n_outputs):
    """The per-sample weights (float64, C-contiguous) of ``fit``, or None."""
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight)
        if weights.dtype.kind not in "iuf" or weights.ndim != 1 or len(weights) != len(labels):
            raise ValueError(f"sample_weight must be {len(labels)} numbers, one per sample, "
                             f"got an array of shape {weights.shape} and dtype {weights.dtype}")
        weights = np.array(weights, dtype=np.float64)
        _check_weight_values(weights, "sample_weight")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{class: weight}}, got "
                            f"{type(class_weight).__name__}")
        table = np.ones(n_outputs)
        for key, value in class_weight.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) \
                    or not 0 <= key < n_outputs:
                raise ValueError(f"class_weight's classes must be integers in "
                                 f"0..{n_outputs - 1}, got {key!r}")
            table[key] = check_finite_number(value, f"class_weight[{key}]")
        _check_weight_values(table, "class_weight")
        by_class = table[labels]
        weights = by_class if weights is None else weights * by_class
    return None if weights is None else np.ascontiguousarray(weights)


def _check_weight_values(weights, name):
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"{name} must hold finite weights >= 0")


_DATASET_KEYS = ("name", "input_shape", "n_classes", "class_names", "source")


def _fit_dataset(dataset, sample_shape, n_outputs):
    """``fit``'s ``dataset`` completed with the number of classes (the outputs) and,
    unless given, the shape of a sample, then checked (:func:`check_dataset`)."""
    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict, got {type(dataset).__name__}")
    dataset = check_dataset({"input_shape": list(sample_shape), **dataset,
                             "n_classes": n_outputs})
    if math.prod(dataset["input_shape"]) != math.prod(sample_shape):
        raise ValueError(f"dataset's input_shape {dataset['input_shape']} does not hold "
                         f"the {math.prod(sample_shape)} values of a sample")
    return dataset


def check_dataset(dataset):
    """Return :attr:`Sequential.dataset`'s dict with every key, checked.

    ``dataset`` needs ``name``, ``input_shape`` and ``n_classes``; ``class_names`` and
    ``source`` may be missing or None.  Raises ``TypeError`` or ``ValueError`` naming
    the bad entry.
    """
    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict, got {type(dataset).__name__}")
    unknown = set(dataset) - set(_DATASET_KEYS)
    if unknown:
        raise ValueError(f"dataset has unknown keys {sorted(unknown)} "
                         f"(known: {', '.join(_DATASET_KEYS)})")
    name, shape = dataset.get("name"), dataset.get("input_shape")
    n_classes, names = dataset.get("n_classes"), dataset.get("class_names")
    source = dataset.get("source")
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset needs a name (a non-empty string), got {name!r}")
    if not (isinstance(shape, (list, tuple)) and shape and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in shape)):
        raise ValueError(f"dataset's input_shape must be a list of positive integers, "
                         f"got {shape!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(f"dataset's n_classes must be a positive integer, got {n_classes!r}")
    if names is not None and not (isinstance(names, (list, tuple)) and len(names) == n_classes
                                  and all(isinstance(n, str) for n in names)):
        raise ValueError(f"dataset's class_names must be {n_classes} strings, one per "
                         f"class, got {names!r}")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"dataset's source must be a string, got {source!r}")
    return {"name": name, "input_shape": [int(d) for d in shape], "n_classes": int(n_classes),
            "class_names": None if names is None else list(names), "source": source}


def _check_callbacks(callbacks, model, optimizer):
    """``callbacks`` as a list, each checked and told the model and optimizer."""
    from numrec.callbacks import Callback

    callbacks = list(callbacks or ())
    for index, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{index}] must be a numrec.callbacks.Callback, got "
                            f"{type(callback).__name__}")
        callback.model, callback.optimizer = model, optimizer
    return callbacks


def _check_learning(history, labels):
    """Set ``history.stalled`` and warn when validation accuracy is at chance level."""
    majority = np.bincount(labels).max() / len(labels) if len(labels) else 0.0
    accuracy = history.val_accuracy[-1]
    history.stalled = bool(len(labels)) and accuracy <= majority + CHANCE_MARGIN
    if history.stalled:
        warnings.warn(TrainingWarning(
            f"the network is not learning: validation accuracy {100 * accuracy:.2f} % after "
            f"{history.epochs} epoch{'s' if history.epochs > 1 else ''} is no better than "
            f"always answering the most frequent class ({100 * majority:.2f} %); try a "
            f"lower learning rate (deeper networks need lower ones)"), stacklevel=3)


def _default_threads():
    """Threads for the compiled loop: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_blas_controller = None


@contextlib.contextmanager
def _blas_threads(count):
    """Limit BLAS to ``count`` threads inside the block (None: leave it as it is).

    The loaded BLAS libraries are looked up once, at the first call (threadpoolctl
    reads the process's memory map for them, a few milliseconds per fit otherwise);
    numpy's and SciPy's, the ones numrec calls, are loaded by then.
    """
    global _blas_controller
    if count is None:
        yield
        return
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=count, user_api="blas"):
        yield


def _check_component(value, name, kind):
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a numrec.{kind.__name__}, got {type(value).__name__}")
    return value


def _check_inputs(x, name, input_shape, *, finite=True):
    """Check a model input of floats or uint8 pixels, finite (unless ``finite`` is
    False), and return it as rows ``(n, prod(input_shape))`` (a view where it can be).

    Accepted: ``(n, *input_shape)``, rows ``(n, prod(input_shape))``, and for an
    ``input_shape`` ``(1, H, W)`` also ``(n, H, W)``; any rows when the shape is unknown.
    """
    if (not finite and type(x) is np.ndarray and x.ndim == 2 and input_shape is not None
            and len(input_shape) == 1 and x.shape[1] == input_shape[0]
            and (x.dtype.kind == "f" or x.dtype == np.uint8) and x.flags.c_contiguous):
        return x  # the rows as check_array would give them (predict's one-sample path)
    if input_shape is None or not isinstance(x, np.ndarray) or x.ndim == 2:
        width = None if input_shape is None else math.prod(input_shape)
        if input_shape is not None and len(input_shape) > 1 and isinstance(x, np.ndarray) \
                and x.shape[1:] != (width,):
            raise ValueError(_shape_problem(name, x.shape, input_shape))
        x = check_array(x, name, shape=(None, width), finite=finite)
    else:
        accepted = [tuple(input_shape)]
        if len(input_shape) == 3 and input_shape[0] == 1:
            accepted.append(tuple(input_shape[1:]))
        if x.shape[1:] not in accepted:
            raise ValueError(_shape_problem(name, x.shape, input_shape))
        x = check_array(x, name, shape=(None, *x.shape[1:]), finite=finite)
        x = x.reshape(len(x), -1)
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise TypeError(f"{name} must hold floats or uint8 pixels, got dtype {x.dtype}")
    return x


def _shape_problem(name, shape, input_shape):
    width = math.prod(input_shape)
    if len(input_shape) == 1:
        return f"{name} must have shape (n, {width}), got {tuple(shape)}"
    forms = [f"(n, {', '.join(map(str, input_shape))})", f"rows (n, {width})"]
    if len(input_shape) == 3 and input_shape[0] == 1:
        forms.insert(1, f"(n, {input_shape[1]}, {input_shape[2]})")
    return (f"{name} must have shape {' or '.join(forms)} for the model's input_shape "
            f"{tuple(input_shape)}, got {tuple(shape)}")


def _prepare_targets(y, n_samples, n_outputs, dtype, name):
    """Return (targets, labels) for labels ``(n,)`` or target rows ``(n, n_outputs)``.

    ``targets`` is None for labels; ``labels`` is the argmax of the target rows.
    """
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(y).__name__}")
    if y.ndim not in (1, 2) or len(y) != n_samples:
        x_name = "x_val" if name == "y_val" else "x"
        if y.ndim in (1, 2):
            raise ValueError(
                f"{x_name} and {name} must have the same number of samples, "
                f"got {n_samples} and {len(y)}"
            )
        raise ValueError(
            f"{name} must have shape (n,) (labels) or (n, {n_outputs}) (targets), "
            f"got {tuple(y.shape)}"
        )
    if y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
        if len(y) and (y.min() < 0 or y.max() >= n_outputs):
            raise ValueError(
                f"{name} must hold labels in 0..{n_outputs - 1}, "
                f"got values from {y.min()} to {y.max()}"
            )
        return None, np.ascontiguousarray(y, dtype=np.int64)
    targets = check_array(y, name, shape=(n_samples, n_outputs))
    if targets.dtype.kind != "f":
        raise TypeError(f"{name} must hold floats when 2-D, got dtype {targets.dtype}")
    targets = np.ascontiguousarray(targets, dtype=dtype)
    return targets, targets.argmax(axis=1)


def mnist_mlp(hidden=(256,), *, alpha=0.2, seed=None, dtype=np.float32):
    """Build the reference digit network: 784 → 256 → 10, LeakyReLU(0.2), Sigmoid.

    The network of *number_recognition* (its README writes 728 inputs: a typo for
    28 × 28 = 784): dense layers with He initialisation, a leaky ReLU after each hidden
    layer and a logistic sigmoid on the 10 outputs.  Train it with the quadratic cost
    (:class:`MSE`) and plain :class:`SGD`.

    Parameters
    ----------
    hidden : sequence of int, default (256,)
        Widths of the hidden layers.
    alpha : float, default 0.2
        Slope of the leaky ReLU for negative inputs.
    seed : int or numpy.random.Generator, optional
        Initial weights; the same seed gives the same network.
    dtype : float32 or float64

    Returns
    -------
    Sequential
    """
    if isinstance(hidden, (int, np.integer)):
        hidden = (hidden,)
    sizes = [784, *(check_positive_int(width, "hidden") for width in hidden), 10]
    rng = as_rng(seed)
    components = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        components.append(Dense(n_in, n_out, seed=rng, dtype=dtype))
        components.append(LeakyReLU(alpha))
    components[-1] = Sigmoid()
    return Sequential(components)
