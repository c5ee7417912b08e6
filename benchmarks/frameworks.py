"""The seed network trained one epoch at a time in numrec and in each peer framework.

Every runner trains the same network from the same initial weights, on the same batch
order, with the same loss and the same plain SGD:

* 784 -> 256 -> 10, leaky ReLU (alpha 0.2) after the hidden layer, logistic sigmoid output;
* quadratic cost summed over the 10 outputs and averaged over the batch, whose gradient
  is ``2 (a - y) / n`` (PyTorch's ``MSELoss`` would also divide by the number of outputs,
  so the peers write the cost out as ``((a - y) ** 2).sum(1).mean()``);
* float32 throughout.

A runner's life: ``prepare(data)`` once (put the data where the framework wants it),
``start(init, lr)`` to load the shared initial weights, then ``epoch(order, order_seed,
batch_size)`` as often as needed.  One ``epoch`` is one pass over the 60000 training
images (the last, partial batch included) followed by one pass over the 10000 test
images; it returns ``(seconds, test_accuracy)``, the seconds measured around both passes.
"""
import importlib.util
import re
import time
from pathlib import Path

import numpy as np

ALPHA = 0.2
N_IN, N_HIDDEN, N_OUT = 784, 256, 10


def initial_weights(seed):
    """He-initialised float32 weights ``(W1, b1, W2, b2)``; ``W`` is ``(out, in)``."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((N_HIDDEN, N_IN)) * np.sqrt(2.0 / N_IN)).astype(np.float32)
    w2 = (rng.standard_normal((N_OUT, N_HIDDEN)) * np.sqrt(2.0 / N_HIDDEN)).astype(np.float32)
    return (w1, np.zeros(N_HIDDEN, np.float32), w2, np.zeros(N_OUT, np.float32))


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

    def versions(self):
        return {}


# --- NumPy ----------------------------------------------------------------------------------

class NumpyRunner(Runner):
    """A hand-written forward and backward pass with ``@``, as one would write it in NumPy."""

    name, label = "numpy", "NumPy"

    def prepare(self, data):
        self.x, self.y = data.x_train_f32, data.y_train_onehot
        self.x_test, self.y_test = data.x_test_f32, data.y_test

    def start(self, init, lr):
        self.w1, self.b1, self.w2, self.b2 = (p.copy() for p in init)
        self.lr = np.float32(lr)

    def epoch(self, order, order_seed, batch_size):
        w1, b1, w2, b2, lr = self.w1, self.b1, self.w2, self.b2, self.lr
        x_all, y_all = self.x, self.y
        start = time.perf_counter()
        with np.errstate(over="ignore"):
            for begin in range(0, len(order), batch_size):
                rows = order[begin:begin + batch_size]
                x, y = x_all[rows], y_all[rows]
                z1 = x @ w1.T
                z1 += b1
                a1 = np.where(z1 > 0, z1, ALPHA * z1)
                z2 = a1 @ w2.T
                z2 += b2
                a2 = 1 / (1 + np.exp(-z2))
                g2 = (2 / len(rows)) * (a2 - y) * a2 * (1 - a2)       # dL/dz2
                g1 = (g2 @ w2) * np.where(z1 > 0, np.float32(1), np.float32(ALPHA))
                w2 -= lr * (g2.T @ a1)
                b2 -= lr * g2.sum(axis=0)
                w1 -= lr * (g1.T @ x)
                b1 -= lr * g1.sum(axis=0)
            z1 = self.x_test @ w1.T + b1
            z2 = np.where(z1 > 0, z1, ALPHA * z1) @ w2.T + b2
            a2 = 1 / (1 + np.exp(-z2))
            accuracy = float(np.mean(a2.argmax(axis=1) == self.y_test))
        return time.perf_counter() - start, accuracy

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
        self.x = torch.from_numpy(data.x_train_f32)
        self.y = torch.from_numpy(data.y_train_onehot)
        self.x_test = torch.from_numpy(data.x_test_f32)
        self.y_test = torch.from_numpy(data.y_test)
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Linear(N_IN, N_HIDDEN), nn.LeakyReLU(ALPHA),
            nn.Linear(N_HIDDEN, N_OUT), nn.Sigmoid(),
        )
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
        layers = [self.model[0], self.model[2]]
        with torch.no_grad():
            for layer, (w, b) in zip(layers, [init[:2], init[2:]]):
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

        self.jax, self.jnp = jax, jnp
        self.x = jax.device_put(data.x_train_f32)
        self.y = jax.device_put(data.y_train_onehot)
        self.x_test = jax.device_put(data.x_test_f32)
        self.y_test = jax.device_put(data.y_test.astype(np.int32))

        def forward(params, x):
            w1, b1, w2, b2 = params
            hidden = jax.nn.leaky_relu(x @ w1.T + b1, ALPHA)
            return jax.nn.sigmoid(hidden @ w2.T + b2)

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

    def start(self, init, lr):
        self.params = tuple(self.jax.device_put(p.copy()) for p in init)
        self.lr = np.float32(lr)

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
        self.fused = None
        self.last_history_seconds = None

    def build(self, init):
        numrec = self.numrec
        dense1, dense2 = numrec.Dense(N_IN, N_HIDDEN), numrec.Dense(N_HIDDEN, N_OUT)
        dense1.weights, dense1.bias, dense2.weights, dense2.bias = init
        return numrec.Sequential([dense1, numrec.LeakyReLU(ALPHA), dense2, numrec.Sigmoid()])

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

    def versions(self):
        return {"numrec": f"{self.numrec.__version__} ({Path(self.numrec.__file__).parent})"}


RUNNERS = {cls.name: cls for cls in
           (NumpyRunner, TorchRunner, TorchCompileRunner, JaxRunner, NumrecRunner)}
PEERS = ("numpy", "torch", "torch-compile", "jax")
