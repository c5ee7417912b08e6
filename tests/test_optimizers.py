"""What is particular to the compiled optimizers beyond the conformance suite: argument
checks, configs, SGD's two conventions of momentum, and a learning rate that changes
between calls of ``fit``.  The references are NumPy loops of the documented formulas."""
import json
import math
import re

import numpy as np
import pytest

import numrec

OPTIMIZERS = [numrec.SGD, numrec.Adam, numrec.AdamW]


def random_steps(dtype, n_steps, seed=0, shapes=((6, 5), (6,))):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in shapes]
             for _ in range(n_steps)]
    return params, grads


def max_relative(got, want):
    return max(np.max(np.abs(a - b)) / np.max(np.abs(b)) for a, b in zip(got, want))


# --- arguments -----------------------------------------------------------------------------

@pytest.mark.parametrize("cls", OPTIMIZERS)
@pytest.mark.parametrize("value, error, message", [
    (0.0, ValueError, "lr must be positive"), (-0.1, ValueError, "lr must be positive"),
    (math.nan, ValueError, "lr must be finite"), (math.inf, ValueError, "lr must be finite"),
    ("0.1", TypeError, "lr must be a number"), (True, TypeError, "lr must be a number"),
])
def test_bad_learning_rates(cls, value, error, message):
    with pytest.raises(error, match=message):
        cls(lr=value)
    optimizer = cls(lr=0.1)
    with pytest.raises(error, match=message):
        optimizer.lr = value
    assert optimizer.lr == 0.1


@pytest.mark.parametrize("cls", [numrec.Adam, numrec.AdamW])
@pytest.mark.parametrize("kwargs, error, message", [
    ({"betas": (1.0, 0.999)}, ValueError, re.escape("betas[0] must be below 1")),
    ({"betas": (0.9, 1.5)}, ValueError, re.escape("betas[1] must be below 1")),
    ({"betas": (-0.1, 0.999)}, ValueError, re.escape("betas[0] must be at least 0")),
    ({"betas": (0.9, math.nan)}, ValueError, re.escape("betas[1] must be finite")),
    ({"betas": (0.9,)}, TypeError, re.escape("betas must be a pair (beta1, beta2)")),
    ({"betas": (0.9, 0.99, 0.9)}, TypeError, re.escape("betas must be a pair")),
    ({"betas": 0.9}, TypeError, re.escape("betas must be a pair")),
    ({"betas": "ab"}, TypeError, re.escape("betas must be a pair")),
    ({"betas": (0.9, "x")}, TypeError, re.escape("betas[1] must be a number")),
    ({"eps": 0.0}, ValueError, "eps must be positive"),
    ({"eps": -1e-8}, ValueError, "eps must be positive"),
    ({"eps": math.inf}, ValueError, "eps must be finite"),
    ({"weight_decay": -0.01}, ValueError, "weight_decay must be at least 0"),
    ({"weight_decay": math.nan}, ValueError, "weight_decay must be finite"),
])
def test_bad_adam_arguments(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"momentum": 0.0, "classic": True}, ValueError, "classic=True needs a momentum above 0"),
    ({"momentum": 0.9, "classic": True, "nesterov": True}, ValueError,
     "classic=True and nesterov=True cannot be combined"),
    ({"momentum": 0.9, "classic": 1}, TypeError, "classic must be True or False"),
    ({"momentum": 1.0}, ValueError, "momentum must be below 1"),
])
def test_bad_sgd_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        numrec.SGD(0.1, **kwargs)


# --- configs -------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, config, text", [
    (numrec.Adam(), {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
     "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"),
    (numrec.AdamW(lr=0.01, betas=[0.5, 0.9]),
     {"lr": 0.01, "betas": [0.5, 0.9], "eps": 1e-8, "weight_decay": 0.01},
     "AdamW(lr=0.01, betas=(0.5, 0.9), eps=1e-08, weight_decay=0.01)"),
    (numrec.SGD(0.01, 0.99, classic=True),
     {"lr": 0.01, "momentum": 0.99, "nesterov": False, "classic": True},
     "SGD(lr=0.01, momentum=0.99, nesterov=False, classic=True)"),
])
def test_config_is_json_and_rebuilds(optimizer, config, text):
    assert optimizer.get_config() == config
    loaded = json.loads(json.dumps(optimizer.get_config()))
    assert loaded == config   # JSON gives back the same dict (betas as a list)
    rebuilt = type(optimizer)(**loaded)
    assert rebuilt.get_config() == config
    assert repr(optimizer) == repr(rebuilt) == text


def test_adam_defaults_follow_pytorch():
    adam, adamw = numrec.Adam(), numrec.AdamW()
    for optimizer in (adam, adamw):
        assert (optimizer.lr, optimizer.betas, optimizer.eps) == (0.001, (0.9, 0.999), 1e-8)
        assert optimizer.state_per_parameter == 2
        assert optimizer.folded_step() is None
    assert (adam.weight_decay, adamw.weight_decay) == (0.0, 0.01)
    assert isinstance(adamw, numrec.Adam)


# --- SGD's classical momentum --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_classic_momentum_follows_its_formula(dtype, weight_decay):
    """The reference network's code: v <- mu v + lr g; w <- w - v (mu 0.99 there)."""
    params, grad_steps = random_steps(dtype, 6, seed=1)
    lr, mu = 0.01, 0.99
    optimizer = numrec.SGD(lr, mu, classic=True, weight_decay=weight_decay)
    working = [p.copy() for p in params]
    expected = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    eps = np.finfo(dtype).eps
    for grads in grad_steps:
        optimizer.step(working, grads)
        for i, g in enumerate(grads):
            g = g + dtype(weight_decay) * expected[i]
            velocity[i] = dtype(mu) * velocity[i] + dtype(lr) * g
            expected[i] = expected[i] - velocity[i]
        for got, want in zip(working, expected):
            np.testing.assert_allclose(got, want, rtol=8 * eps, atol=8 * eps)
        for (got,), want in zip(optimizer.state(), velocity):
            np.testing.assert_allclose(got, want, rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_classic_momentum_equals_pytorch_convention_at_a_constant_rate(weight_decay):
    params, grad_steps = random_steps(np.float64, 8, seed=2)
    lr, mu = 0.05, 0.9
    classic = numrec.SGD(lr, mu, classic=True, weight_decay=weight_decay)
    pytorch_like = numrec.SGD(lr, mu, weight_decay=weight_decay)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    for grads in grad_steps:
        classic.step(a, grads)
        pytorch_like.step(b, grads)
        assert max_relative(a, b) < 1e-12
    assert max_relative(a, params) > 1e-3   # they moved
    # The classic velocity is lr times PyTorch's.
    for (v_classic,), (v_torch,) in zip(classic.state(), pytorch_like.state()):
        np.testing.assert_allclose(v_classic, lr * v_torch, rtol=1e-12, atol=0)


def test_classic_momentum_in_the_compiled_loop_matches_pytorch_convention():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((400, 30)), rng.integers(0, 4, 400)
    params = []
    for optimizer in (numrec.SGD(0.05, 0.9, classic=True), numrec.SGD(0.05, 0.9)):
        model = numrec.Sequential([numrec.Dense(30, 40, seed=4, dtype=np.float64),
                                   numrec.LeakyReLU(0.2),
                                   numrec.Dense(40, 4, seed=5, dtype=np.float64),
                                   numrec.Sigmoid()])
        history = model.fit(x, y, epochs=3, batch_size=16, optimizer=optimizer, seed=6)
        assert history.loop == "compiled"
        params.append(model.parameters())
    assert max_relative(*params) < 1e-10


# --- the learning rate changes between steps -------------------------------------------------

def numpy_sgd(params, grad_steps, rates, momentum=0.0, classic=False):
    params = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    for grads, lr in zip(grad_steps, rates):
        for i, g in enumerate(grads):
            if classic:
                velocity[i] = momentum * velocity[i] + lr * g
                params[i] = params[i] - velocity[i]
            else:
                velocity[i] = momentum * velocity[i] + g
                params[i] = params[i] - lr * velocity[i]
    return params


def numpy_adam(params, grad_steps, rates, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               decoupled=False):
    """Adam's textbook form: theta -= lr m_hat / (sqrt(v_hat) + eps)."""
    beta1, beta2 = betas
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, (grads, lr) in enumerate(zip(grad_steps, rates), start=1):
        for i, g in enumerate(grads):
            if decoupled:
                params[i] = params[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * params[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


RATE_CASES = {
    "sgd": (lambda lr: numrec.SGD(lr), lambda p, g, r: numpy_sgd(p, g, r)),
    "momentum": (lambda lr: numrec.SGD(lr, 0.9), lambda p, g, r: numpy_sgd(p, g, r, 0.9)),
    "classic": (lambda lr: numrec.SGD(lr, 0.9, classic=True),
                lambda p, g, r: numpy_sgd(p, g, r, 0.9, classic=True)),
    "adam": (lambda lr: numrec.Adam(lr, weight_decay=0.1),
             lambda p, g, r: numpy_adam(p, g, r, weight_decay=0.1)),
    "adamw": (lambda lr: numrec.AdamW(lr, weight_decay=0.1),
              lambda p, g, r: numpy_adam(p, g, r, weight_decay=0.1, decoupled=True)),
}


@pytest.mark.parametrize("case", list(RATE_CASES))
def test_the_next_step_uses_a_new_learning_rate(case):
    make, reference = RATE_CASES[case]
    params, grad_steps = random_steps(np.float64, 6, seed=7)
    rates = [0.1, 0.1, 0.02, 0.02, 0.005, 0.3]
    optimizer = make(rates[0])
    working = [p.copy() for p in params]
    for grads, lr in zip(grad_steps, rates):
        optimizer.lr = lr
        assert optimizer.lr == lr
        optimizer.step(working, grads)
    assert max_relative(working, reference(params, grad_steps, rates)) < 1e-12
    # and the schedule mattered: a constant rate ends elsewhere
    constant = reference(params, grad_steps, [rates[0]] * len(rates))
    assert max_relative(working, constant) > 1e-3


def mnist_like(n=600, seed=8):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 60)), rng.integers(0, 10, n)


def small_model(dtype=np.float64):
    return numrec.Sequential([numrec.Dense(60, 48, seed=9, dtype=dtype), numrec.LeakyReLU(0.2),
                              numrec.Dense(48, 10, seed=10, dtype=dtype), numrec.Sigmoid()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_sgd_reads_the_rate_at_each_fit(dtype):
    """The compiled loop folds plain SGD's step into the products: a new rate between
    fits must reach it.  A stateless SGD at the new rate is the reference (same bits)."""
    x, y = mnist_like()
    x = x.astype(dtype)
    scheduled, fresh, constant = small_model(dtype), small_model(dtype), small_model(dtype)
    optimizer = numrec.SGD(0.5)
    assert optimizer.folded_step() == -0.5
    h1 = scheduled.fit(x, y, epochs=1, batch_size=32, optimizer=optimizer, seed=11)
    optimizer.lr = 0.05
    assert optimizer.folded_step() == -0.05
    h2 = scheduled.fit(x, y, epochs=1, batch_size=32, optimizer=optimizer, seed=12)
    assert h1.loop == h2.loop == "compiled"
    fresh.fit(x, y, epochs=1, batch_size=32, optimizer=numrec.SGD(0.5), seed=11)
    fresh.fit(x, y, epochs=1, batch_size=32, optimizer=numrec.SGD(0.05), seed=12)
    constant.fit(x, y, epochs=1, batch_size=32, optimizer=numrec.SGD(0.5), seed=11)
    constant.fit(x, y, epochs=1, batch_size=32, optimizer=numrec.SGD(0.5), seed=12)
    for a, b, c in zip(scheduled.parameters(), fresh.parameters(), constant.parameters()):
        assert np.array_equal(a, b)
        assert not np.allclose(a, c)


@pytest.mark.parametrize("cls", [numrec.Adam, numrec.AdamW])
def test_adam_schedule_between_fits_in_the_compiled_loop(cls):
    """A new rate between fits, the state and step count carried over: the compiled loop
    against the Python loop (the optimizer's step per batch)."""
    x, y = mnist_like()
    runs = []
    for fused in (None, False):
        model, optimizer = small_model(), cls(lr=0.01)
        model.fit(x, y, epochs=1, batch_size=32, optimizer=optimizer, seed=13, fused=fused)
        assert optimizer.steps == 600 // 32 + 1
        optimizer.lr = 0.001
        history = model.fit(x, y, epochs=1, batch_size=32, optimizer=optimizer, seed=14,
                            fused=fused)
        assert optimizer.steps == 2 * (600 // 32 + 1)
        runs.append((history.loop, model.parameters()))
    (loop_a, params_a), (loop_b, params_b) = runs
    assert (loop_a, loop_b) == ("compiled", "python")
    assert max_relative(params_a, params_b) < 1e-12
    unscheduled, optimizer = small_model(), cls(lr=0.01)
    for seed in (13, 14):
        unscheduled.fit(x, y, epochs=1, batch_size=32, optimizer=optimizer, seed=seed)
    assert max_relative(params_a, unscheduled.parameters()) > 1e-4


class NumpyLeakyReLU(numrec.Activation):
    """LeakyReLU(0.2) written in NumPy: its model trains in the segmented loop."""

    def forward(self, z):
        return np.where(z > 0, z, z * 0.2)

    def derivative(self, z, a):
        return np.where(z > 0, 1.0, 0.2)


@pytest.mark.parametrize("make", [lambda: numrec.Adam(0.01, weight_decay=0.01),
                                  lambda: numrec.AdamW(0.01),
                                  lambda: numrec.SGD(0.05, 0.9, classic=True)],
                         ids=["Adam", "AdamW", "SGD-classic"])
def test_segmented_loop_computes_what_the_compiled_loop_computes(make):
    x, y = mnist_like()
    runs = []
    for hidden in (numrec.LeakyReLU(0.2), NumpyLeakyReLU()):
        model = numrec.Sequential([numrec.Dense(60, 48, seed=9, dtype=np.float64), hidden,
                                   numrec.Dense(48, 10, seed=10, dtype=np.float64),
                                   numrec.Sigmoid()])
        optimizer = make()
        history = model.fit(x, y, epochs=2, batch_size=32, optimizer=optimizer, seed=15)
        runs.append((history.loop, optimizer.steps, model.parameters()))
    (loop_a, steps_a, params_a), (loop_b, steps_b, params_b) = runs
    assert (loop_a, loop_b) == ("compiled", "segmented")
    assert steps_a == steps_b == 2 * (600 // 32 + 1)
    for a, b in zip(params_a, params_b):
        assert np.array_equal(a, b)


# --- the steps at every vector width -------------------------------------------------------

def _step_levels():
    from numrec._core import _optimizers
    levels = _optimizers._step_kernel_levels()
    for name in levels:  # each one the processor runs can be set
        _optimizers._step_kernel_level(_optimizers._step_kernel_level(name))
    return levels


def numpy_adam_bits(params, grad_steps, lr, betas, eps, weight_decay, decoupled, dtype):
    """Adam in PyTorch's order of operations, each in ``dtype`` (NumPy rounds every
    element-wise operation correctly, so this is the step's exact result)."""
    beta1, beta2 = betas
    cast = np.dtype(dtype).type
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    shrink = cast(1.0 - lr * weight_decay) if decoupled else cast(1.0)
    l2 = cast(0.0) if decoupled else cast(weight_decay)
    weight1, weight2 = cast(1.0 - beta1), cast(1.0 - beta2)
    for t, grads in enumerate(grad_steps, start=1):
        neg_step_size = cast(-(lr / (1.0 - beta1 ** t)))
        bias_correction2_sqrt = cast((1.0 - beta2 ** t) ** 0.5)
        for i, grad in enumerate(grads):
            theta = params[i] * shrink
            g = grad + l2 * theta
            if weight1 < 0.5:
                m[i] = m[i] + weight1 * (g - m[i])
            else:
                m[i] = g - (g - m[i]) * (cast(1.0) - weight1)
            v[i] = v[i] * cast(beta2) + weight2 * g * g
            denom = np.sqrt(v[i]) / bias_correction2_sqrt + cast(eps)
            params[i] = theta + neg_step_size * m[i] / denom
    return params, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, betas, weight_decay", [
    (numrec.Adam, (0.9, 0.999), 0.0), (numrec.Adam, (0.3, 0.99), 0.05),
    (numrec.AdamW, (0.9, 0.999), 0.01), (numrec.AdamW, (0.5, 0.9), 0.1),
])
def test_adam_step_gives_numpys_bits_at_every_level(dtype, cls, betas, weight_decay):
    """Sizes that are not multiples of any vector width; both forms of the lerp."""
    from numrec._core import _optimizers
    params, grad_steps = random_steps(dtype, 4, seed=21, shapes=((37, 29), (29,), (3,)))
    want = numpy_adam_bits(params, grad_steps, 0.01, betas, 1e-8, weight_decay,
                           cls is numrec.AdamW, dtype)
    levels = _step_levels()
    assert "portable" in levels
    for name in levels:
        previous = _optimizers._step_kernel_level(name)
        try:
            optimizer = cls(lr=0.01, betas=betas, weight_decay=weight_decay)
            working = [p.copy() for p in params]
            for grads in grad_steps:
                optimizer.step(working, grads)
        finally:
            _optimizers._step_kernel_level(previous)
        moments = optimizer.state()   # [m, v] per parameter
        got = (working, [m for m, _ in moments], [v for _, v in moments])
        for got_arrays, want_arrays in zip(got, want):
            for a, b in zip(got_arrays, want_arrays, strict=True):
                assert a.dtype == b.dtype == dtype
                assert np.array_equal(a, b), f"{name}: {np.max(np.abs(a - b))}"


def numpy_sgd_bits(params, grad_steps, lr, momentum, weight_decay, nesterov, classic, dtype):
    """SGD's step in the order of numrec's kernels, each operation in ``dtype``."""
    cast = np.dtype(dtype).type
    lr, momentum, weight_decay = cast(lr), cast(momentum), cast(weight_decay)
    params = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    for grads in grad_steps:
        for i, grad in enumerate(grads):
            if classic:
                velocity[i] = momentum * velocity[i] + lr * (grad + weight_decay * params[i])
                params[i] = params[i] - velocity[i]
                continue
            d = grad + weight_decay * params[i] if weight_decay else grad
            if momentum:
                velocity[i] = momentum * velocity[i] + d
                d = d + momentum * velocity[i] if nesterov else velocity[i]
            params[i] = params[i] - lr * d
    return params, velocity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [
    {}, {"weight_decay": 0.01}, {"momentum": 0.9}, {"momentum": 0.9, "weight_decay": 0.01},
    {"momentum": 0.9, "nesterov": True}, {"momentum": 0.99, "classic": True},
    {"momentum": 0.9, "classic": True, "weight_decay": 0.01},
])
def test_sgd_step_gives_numpys_bits_at_every_level(dtype, kwargs):
    from numrec._core import _optimizers
    params, grad_steps = random_steps(dtype, 4, seed=22, shapes=((37, 29), (29,), (3,)))
    want, want_velocity = numpy_sgd_bits(
        params, grad_steps, 0.05, kwargs.get("momentum", 0.0),
        kwargs.get("weight_decay", 0.0), kwargs.get("nesterov", False),
        kwargs.get("classic", False), dtype)
    for name in _step_levels():
        previous = _optimizers._step_kernel_level(name)
        try:
            optimizer = numrec.SGD(0.05, **kwargs)
            working = [p.copy() for p in params]
            for grads in grad_steps:
                optimizer.step(working, grads)
        finally:
            _optimizers._step_kernel_level(previous)
        for a, b in zip(working, want, strict=True):
            assert a.dtype == b.dtype == dtype
            assert np.array_equal(a, b), f"{name}: {np.max(np.abs(a - b))}"
        if kwargs.get("momentum"):
            for (v,), b in zip(optimizer.state(), want_velocity, strict=True):
                assert np.array_equal(v, b), name


def test_step_kernel_level_names_a_bad_level():
    from numrec._core import _optimizers
    with pytest.raises(ValueError, match="unknown kernel level 'sse9'"):
        _optimizers._step_kernel_level("sse9")
