"""The seed network trained one epoch at a time in numrec and in each peer framework.

Every runner trains the same network from the same initial weights, on the same batch
order, with the same loss and the same plain SGD:

* by default 784 -> 256 -> 10 (the reference network; ``sizes`` gives others, such as
  784 -> 512 -> 256 -> 10), leaky ReLU (alpha 0.2) after every hidden layer, logistic
  sigmoid output;
* quadratic cost summed over the 10 outputs and averaged over the batch, whose gradient
  is ``2 (a - y) / n`` (PyTorch's ``MSELoss`` would also divide by the number of outputs,
  so the peers write the cost out as ``((a - y) ** 2).sum(1).mean()``);
* float32 throughout by default, or float64 (``dtype``).

``Runner(sizes, dtype)`` builds a runner for another network or dtype; the floats it
trains on are ``data.x_train_f32``, ``data.y_train_onehot`` and ``data.x_test_f32`` in
float32, and ``data.x_train_f64``, ``data.y_train_onehot_f64`` and ``data.x_test_f64``
in float64 (see :func:`float_arrays`).

A runner's life: ``prepare(data)`` once (put the data where the framework wants it),
``start(init, lr)`` to load the shared initial weights, then ``epoch(order, order_seed,
batch_size)`` as often as needed.  One ``epoch`` is one pass over the 60000 training
images (the last, partial batch included) followed by one pass over the 10000 test
images; it returns ``(seconds, test_accuracy)``, the seconds measured around both passes.
After ``start``, ``predictor()`` returns ``(predict, as_input)``: ``predict(as_input(x))``
computes the network's outputs for the rows ``x`` (a float array of the runner's dtype),
finished when it returns; ``as_input`` puts ``x`` where the framework reads it (outside
any timing).
"""
import importlib.util
import re
import time
from pathlib import Path

import numpy as np

ALPHA = 0.2
N_IN, N_HIDDEN, N_OUT = 784, 256, 10
REFERENCE_SIZES = (N_IN, N_HIDDEN, N_OUT)


def initial_weights(seed, sizes=REFERENCE_SIZES, dtype=np.float32):
    """He-initialised weights ``(W1, b1, W2, b2, ...)`` of the network ``sizes``.

    ``W`` is ``(out, in)``, drawn layer after layer as
    ``rng.standard_normal((out, in)) * sqrt(2 / in)`` and then cast to ``dtype``; the
    biases are zeros.
    """
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        params += [w.astype(dtype), np.zeros(n_out, dtype)]
    return tuple(params)


def float_arrays(data, dtype):
    """``(x_train, y_train_onehot, x_test)`` of ``data`` in ``dtype`` (float32 or float64)."""
    if np.dtype(dtype) == np.float32:
        return data.x_train_f32, data.y_train_onehot, data.x_test_f32
    if np.dtype(dtype) == np.float64:
        return data.x_train_f64, data.y_train_onehot_f64, data.x_test_f64
    raise ValueError(f"the runners train in float32 or float64, not {np.dtype(dtype)}")


def layer_pairs(params):
    """``[(W1, b1), (W2, b2), ...]`` from the flat ``(W1, b1, W2, b2, ...)``."""
    return [tuple(params[i:i + 2]) for i in range(0, len(params), 2)]


def batch_order(seed, n):
    """The shared batch order of one epoch: ``numpy.random.default_rng(seed).permutation(n)``.

    This is also how ``numrec.Sequential.fit(..., seed=seed)`` shuffles a one-epoch run,
    so numrec trains on exactly the same batches as the peers.
    """
    return np.random.default_rng(seed).permutation(n)


class Runner:
    """Base class: ``name`` is the command-line name, ``label`` the table heading."""

    name = ""
    label = ""
    needs_float = True     # trains on a float32 copy of the images
    module = None          # import name that must be installed
    compiles = False       # compiles code for each new batch shape or setting

    def __init__(self, sizes=REFERENCE_SIZES, dtype=np.float32):
        self.sizes, self.dtype = tuple(sizes), np.dtype(dtype)

    @classmethod
    def missing(cls):
        """Return a note if the framework is not installed, else None."""
        if cls.module and importlib.util.find_spec(cls.module) is None:
            return f"{cls.module} is not installed"
        return None

    def prepare(self, data):
        raise NotImplementedError

    def warm_up(self, batch_size, lr, init, order, order_seed):
        """Run one untimed epoch at ``batch_size``; return its seconds (compilation included)."""
        self.start(init, lr)
        seconds, _ = self.epoch(order, order_seed, batch_size)
        self.warmed.add((batch_size, lr))
        return seconds

    @property
    def warmed(self):
        """The (batch size, learning rate) pairs this runner has run a warm-up epoch for."""
        if not hasattr(self, "_warmed"):
            self._warmed = set()
        return self._warmed

    def start(self, init, lr):
        raise NotImplementedError

    def epoch(self, order, order_seed, batch_size):
        raise NotImplementedError

    def predictor(self):
        raise NotImplementedError

    def versions(self):
        return {}


# --- NumPy ----------------------------------------------------------------------------------

class NumpyRunner(Runner):
    """A hand-written forward and backward pass with ``@``, as one would write it in NumPy."""

    name, label = "numpy", "NumPy"

    def prepare(self, data):
        self.x, self.y, self.x_test = float_arrays(data, self.dtype)
        self.y_test = data.y_test

    def start(self, init, lr):
        self.layers = [(w.copy(), b.copy()) for w, b in layer_pairs(init)]
        self.lr = self.dtype.type(lr)

    def forward(self, x):
        """The outputs of the network for the rows ``x``."""
        last = len(self.layers) - 1
        for index, (w, b) in enumerate(self.layers):
            z = x @ w.T
            z += b
            x = 1 / (1 + np.exp(-z)) if index == last else np.where(z > 0, z, ALPHA * z)
        return x

    def train_batch(self, x, y):
        """One SGD step on the batch ``(x, y)``."""
        layers, lr = self.layers, self.lr
        inputs, pre = [x], []
        for index, (w, b) in enumerate(layers):
            z = inputs[-1] @ w.T
            z += b
            pre.append(z)
            inputs.append(1 / (1 + np.exp(-z)) if index == len(layers) - 1
                          else np.where(z > 0, z, ALPHA * z))
        a = inputs.pop()
        g = (2 / len(x)) * (a - y) * a * (1 - a)                    # dL/dz of the last layer
        one, alpha = self.dtype.type(1), self.dtype.type(ALPHA)
        for index in range(len(layers) - 1, -1, -1):
            w, b = layers[index]
            g_in = (g @ w) * np.where(pre[index - 1] > 0, one, alpha) if index else None
            w -= lr * (g.T @ inputs[index])
            b -= lr * g.sum(axis=0)
            g = g_in

    def epoch(self, order, order_seed, batch_size):
        x_all, y_all = self.x, self.y
        start = time.perf_counter()
        with np.errstate(over="ignore"):
            for begin in range(0, len(order), batch_size):
                rows = order[begin:begin + batch_size]
                self.train_batch(x_all[rows], y_all[rows])
            accuracy = float(np.mean(self.forward(self.x_test).argmax(axis=1) == self.y_test))
        return time.perf_counter() - start, accuracy

    def predictor(self):
        def predict(x):
            with np.errstate(over="ignore"):
                return self.forward(x)
        return predict, np.ascontiguousarray

    def versions(self):
        return {"numpy": np.__version__}


# --- PyTorch ---------------------------------------------------------------------------------

class TorchRunner(Runner):
    """PyTorch eager: ``nn.Sequential`` and ``torch.optim.SGD``, two intra-op threads."""

    name, label = "torch", "PyTorch eager"
    module = "torch"
    compiled = False

    def prepare(self, data):
        import torch
        torch.set_num_threads(2)
        self.torch = torch
        x, y, x_test = float_arrays(data, self.dtype)
        self.x, self.y, self.x_test = (torch.from_numpy(a) for a in (x, y, x_test))
        self.y_test = torch.from_numpy(data.y_test)
        nn = torch.nn
        modules = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            modules += [nn.Linear(n_in, n_out), nn.LeakyReLU(ALPHA)]
        modules[-1] = nn.Sigmoid()
        self.model = nn.Sequential(*modules).to(getattr(torch, self.dtype.name))
        # One optimizer for the runner's life (a compiled step is specialised on it);
        # plain SGD keeps no state, so reusing it across runs changes nothing.
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.5)
        self.train_step = self._train_step
        self.predict = self._predict

    def _train_step(self, x, y):
        out = self.model(x)
        loss = ((out - y) ** 2).sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def _predict(self, x):
        return self.model(x).argmax(1)

    def start(self, init, lr):
        torch = self.torch
        layers = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for layer, (w, b) in zip(layers, layer_pairs(init)):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def epoch(self, order, order_seed, batch_size):
        torch = self.torch
        order = torch.from_numpy(order)
        x_all, y_all, step = self.x, self.y, self.train_step
        start = time.perf_counter()
        for begin in range(0, len(order), batch_size):
            rows = order[begin:begin + batch_size]
            step(x_all[rows], y_all[rows])
        with torch.no_grad():
            accuracy = float((self.predict(self.x_test) == self.y_test).float().mean())
        return time.perf_counter() - start, accuracy

    def predictor(self):
        torch, model = self.torch, self.model

        def predict(x):
            with torch.inference_mode():
                return model(x)
        return predict, lambda x: torch.from_numpy(np.ascontiguousarray(x))

    def versions(self):
        torch = self.torch
        info = {"torch": torch.__version__, "torch threads": torch.get_num_threads()}
        try:
            info["torch CPU capability"] = torch.backends.cpu.get_cpu_capability()
        except AttributeError:  # pragma: no cover - older torch
            pass
        config = torch.__config__.show()
        blas = re.search(r"\bBLAS_INFO=([^,\s]+)", config)
        if blas:
            info["torch BLAS"] = blas.group(1)
        mkl = re.search(r"Math Kernel Library Version (\S+)", config)
        if mkl:
            info["torch BLAS"] = f"{info.get('torch BLAS', 'mkl')} {mkl.group(1)}"
        return info


class TorchCompileRunner(TorchRunner):
    """``torch.compile`` of the whole training step (forward, loss, backward, SGD step).

    The graphs are specialised on the two batch shapes of an epoch (``dynamic=False``);
    compiling happens in the warm-up epoch, which is timed separately.
    """

    name, label = "torch-compile", "torch.compile"
    compiled = compiles = True

    def prepare(self, data):
        super().prepare(data)
        torch = self.torch
        # Five batch shapes (32, 64, 128, 512 and the partial 96) each get their own graph.
        for option in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, option):
                setattr(torch._dynamo.config, option,
                        max(64, getattr(torch._dynamo.config, option)))
                break
        self.train_step = torch.compile(self._train_step, dynamic=False)
        self.predict = torch.compile(self._predict, dynamic=False)


# --- JAX ---------------------------------------------------------------------------------------

class JaxRunner(Runner):
    """JAX: the whole epoch is one jitted function, a ``lax.scan`` over the full batches
    followed by one step on the last partial batch; gradients by ``jax.grad``."""

    name, label = "jax", "JAX (scan)"
    module = "jax"
    compiles = True

    def prepare(self, data):
        import jax
        import jax.numpy as jnp
        from jax import lax

        if self.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        self.jax, self.jnp = jax, jnp
        x, y, x_test = float_arrays(data, self.dtype)
        self.x, self.y, self.x_test = (jax.device_put(a) for a in (x, y, x_test))
        self.y_test = jax.device_put(data.y_test.astype(np.int32))

        def forward(params, x):
            layers = layer_pairs(params)
            for w, b in layers[:-1]:
                x = jax.nn.leaky_relu(x @ w.T + b, ALPHA)
            w, b = layers[-1]
            return jax.nn.sigmoid(x @ w.T + b)

        def loss(params, x, y):
            return ((forward(params, x) - y) ** 2).sum(1).mean()

        grad = jax.grad(loss)

        def sgd_step(params, x, y, lr):
            return tuple(p - lr * g for p, g in zip(params, grad(params, x, y)))

        def train_epoch(params, x_all, y_all, batches, tail, lr):
            def body(params, rows):
                return sgd_step(params, x_all[rows], y_all[rows], lr), None
            params, _ = lax.scan(body, params, batches)
            if tail.shape[0]:      # static: the partial batch has its own shape
                params = sgd_step(params, x_all[tail], y_all[tail], lr)
            return params

        def count_correct(params, x, labels):
            return (forward(params, x).argmax(axis=1) == labels).sum()

        self.train_epoch = jax.jit(train_epoch)
        self.count_correct = jax.jit(count_correct)
        self.forward = jax.jit(forward)

    def start(self, init, lr):
        self.params = tuple(self.jax.device_put(p.copy()) for p in init)
        self.lr = self.dtype.type(lr)

    def epoch(self, order, order_seed, batch_size):
        order = order.astype(np.int32)
        n_full = len(order) // batch_size
        batches = order[:n_full * batch_size].reshape(n_full, batch_size)
        tail = order[n_full * batch_size:]
        start = time.perf_counter()
        params = self.train_epoch(self.params, self.x, self.y, batches, tail, self.lr)
        correct = int(self.count_correct(params, self.x_test, self.y_test))
        seconds = time.perf_counter() - start
        self.params = params
        return seconds, correct / self.y_test.shape[0]

    def predictor(self):
        forward, params = self.forward, self.params
        return (lambda x: forward(params, x).block_until_ready()), self.jax.device_put

    def versions(self):
        import jaxlib
        jax = self.jax
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "jax devices": ", ".join(str(d) for d in jax.devices())}


# --- numrec ------------------------------------------------------------------------------------

class NumrecRunner(Runner):
    """numrec: ``Sequential.fit`` for one epoch with validation data, on uint8 images.

    ``fit(seed=s)`` shuffles with ``numpy.random.default_rng(s).permutation``, the shared
    order; the seconds are wall-clock time around the whole ``fit`` call (argument checks
    and the shuffle included); ``History.seconds`` (epoch + validation, as ``fit`` measures
    it) is kept in ``last_history_seconds``.
    """

    name, label = "numrec", "numrec"
    module = "numrec"
    needs_float = False

    def prepare(self, data):
        import numrec
        self.numrec = numrec
        self.x, self.y = data.x_train_u8, data.y_train
        self.x_test, self.y_test = data.x_test_u8, data.y_test
        if self.x is None:   # inputs that are not pixels (standardised): the floats
            self.x, _, self.x_test = float_arrays(data, self.dtype)
        self.fused = None
        self.last_history_seconds = None

    def build(self, init):
        numrec = self.numrec
        components = []
        for (n_in, n_out), (w, b) in zip(zip(self.sizes[:-1], self.sizes[1:]),
                                         layer_pairs(init)):
            dense = numrec.Dense(n_in, n_out, dtype=self.dtype)
            dense.weights, dense.bias = w, b
            components += [dense, numrec.LeakyReLU(ALPHA)]
        components[-1] = numrec.Sigmoid()
        return numrec.Sequential(components)

    def start(self, init, lr):
        self.model = self.build(init)
        self.optimizer = self.numrec.SGD(lr)
        self.loss = self.numrec.MSE()

    def epoch(self, order, order_seed, batch_size):
        start = time.perf_counter()
        history = self.model.fit(
            self.x, self.y, epochs=1, batch_size=batch_size, loss=self.loss,
            optimizer=self.optimizer, validation_data=(self.x_test, self.y_test),
            seed=order_seed,
        )
        seconds = time.perf_counter() - start
        self.fused = history.fused
        self.last_history_seconds = history.seconds[0]
        return seconds, history.val_accuracy[0]

    def predictor(self):
        model = self.model
        return (lambda x: model.predict(x, batch_size=max(len(x), 1))), np.ascontiguousarray

    def versions(self):
        return {"numrec": f"{self.numrec.__version__} ({Path(self.numrec.__file__).parent})"}


RUNNERS = {cls.name: cls for cls in
           (NumpyRunner, TorchRunner, TorchCompileRunner, JaxRunner, NumrecRunner)}
PEERS = ("numpy", "torch", "torch-compile", "jax")
