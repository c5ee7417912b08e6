"""The compiled training loop: threads, determinism and agreement with the Python loop."""
import numpy as np
import pytest

import numrec

# Random data and labels: these networks have nothing to learn, and fit says so.
pytestmark = pytest.mark.filterwarnings("ignore::numrec.TrainingWarning")


def _data(n=600, n_in=300, n_out=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, n_in), dtype=np.uint8)
    y = rng.integers(0, n_out, size=n)
    return x, y


def _model(dtype, n_in=300, hidden=200, n_out=10):
    # 300 x 200 = 60000 weights: large enough for the threads to share the first layer.
    rng = np.random.default_rng(42)
    return numrec.Sequential([
        numrec.Dense(n_in, hidden, seed=rng, dtype=dtype), numrec.LeakyReLU(0.2),
        numrec.Dense(hidden, n_out, seed=rng, dtype=dtype), numrec.Sigmoid(),
    ])


def _train(dtype, batch_size=32, **options):
    x, y = _data()
    model = _model(dtype)
    history = model.fit(x, y, epochs=2, batch_size=batch_size, optimizer=numrec.SGD(0.3),
                        seed=7, validation_data=(x[:100], y[:100]), **options)
    return model, history


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 32, 77, 150])
def test_seeded_fused_runs_are_bit_identical(threads, batch_size):
    first, history_a = _train(np.float32, batch_size, threads=threads, fused=True)
    second, history_b = _train(np.float32, batch_size, threads=threads, fused=True)
    assert history_a.fused and history_b.fused
    for a, b in zip(first.parameters(), second.parameters()):
        assert np.array_equal(a, b)
    assert history_a.loss == history_b.loss
    assert history_a.val_accuracy == history_b.val_accuracy


@pytest.mark.parametrize("batch_size", [1, 32, 77, 150])
def test_threads_and_python_loop_agree_in_float64(batch_size):
    reference, ref_history = _train(np.float64, batch_size, fused=False)
    for threads in (1, 2, 3):
        model, history = _train(np.float64, batch_size, threads=threads, fused=True)
        for got, expected in zip(model.parameters(), reference.parameters()):
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(history.loss, ref_history.loss, rtol=1e-10)
        assert history.val_accuracy == ref_history.val_accuracy


def test_threads_agree_in_float32():
    one, _ = _train(np.float32, threads=1)
    two, _ = _train(np.float32, threads=2)
    for a, b in zip(one.parameters(), two.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fused_step_on_the_worked_example(seed_network, seed_example):
    """One fused SGD step moves each parameter by -lr times the seed's gradient."""
    lr = 0.1
    reference = seed_network()
    output = reference.forward(seed_example["x"])
    reference.backward(numrec.MSE().gradient(output, seed_example["y"]))
    expected = [p - lr * g for p, g in zip(reference.parameters(), reference.gradients())]
    model = seed_network()
    model.fit(seed_example["x"], seed_example["y"], epochs=1, batch_size=1,
              optimizer=numrec.SGD(lr), fused=True, threads=2)
    for got, want in zip(model.parameters(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_fused_loop_accepts_float_inputs_and_target_rows():
    x, y = _data()
    targets = np.eye(10)[y]
    a = _model(np.float64)
    b = _model(np.float64)
    a.fit(x * (1 / 255), targets, epochs=1, batch_size=16, seed=1, fused=True, threads=2)
    b.fit(x, y, epochs=1, batch_size=16, seed=1, fused=True, threads=2)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_bad_thread_count():
    x, y = _data(n=10)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        _model(np.float32).fit(x, y, threads=0)


@pytest.mark.parametrize("n_in", [300, 301, 784])
def test_uint8_pixels_train_as_their_float32_quotients(n_in):
    """The loop turns each byte v into the float32 nearest v / 255 as it gathers a batch."""
    x, y = _data(n=256, n_in=n_in)
    x[0, :256] = np.arange(256)                     # every byte value
    as_floats = (x / 255.0).astype(np.float32)      # float64 quotients, rounded once
    runs = []
    for inputs in (x, as_floats):
        model = _model(np.float32, n_in=n_in)
        history = model.fit(inputs, y, epochs=1, batch_size=32, optimizer=numrec.SGD(0.3),
                            seed=3, validation_data=(inputs[:100], y[:100]), fused=True)
        runs.append((model.parameters(), history))
    (params_u8, history_u8), (params_f32, history_f32) = runs
    for a, b in zip(params_u8, params_f32):
        assert np.array_equal(a, b)
    assert history_u8.loss == history_f32.loss
    assert history_u8.val_accuracy == history_f32.val_accuracy


def _deep_model(dtype):
    # Two shared stages (300 x 256 and 256 x 200 weights) above a small one: the threads
    # pass dL/dx down to shared units and update the middle stage after every thread
    # has read its weights.
    rng = np.random.default_rng(43)
    return numrec.Sequential([
        numrec.Dense(300, 256, seed=rng, dtype=dtype), numrec.LeakyReLU(0.2),
        numrec.Dense(256, 200, seed=rng, dtype=dtype), numrec.LeakyReLU(0.2),
        numrec.Dense(200, 10, seed=rng, dtype=dtype), numrec.Sigmoid(),
    ])


@pytest.mark.parametrize("blank, batch_size", [
    (0.0, 1), (0.0, 32), (0.0, 77), (0.0, 128),
    (0.8, 1), (0.8, 32), (0.8, 77), (0.8, 128), (0.8, 150), (0.8, 300),
])
def test_deeper_models_give_the_same_bits_for_any_thread_count(blank, batch_size):
    """Up to batch 128, and at any batch size for inputs that are mostly zeros (the
    loop then runs the middle stage 128 rows at a time in numrec's own kernels: BLAS
    products could round differently for each share of the units)."""
    x, y = _data()
    x[np.random.default_rng(1).random(x.shape) < blank] = 0
    results = []
    for threads in (1, 2, 3):
        model = _deep_model(np.float32)
        history = model.fit(x, y, epochs=2, batch_size=batch_size, optimizer=numrec.SGD(0.1),
                            seed=7, threads=threads, fused=True)
        results.append((model.parameters(), history.loss))
    for parameters, loss in results[1:]:
        for a, b in zip(results[0][0], parameters):
            assert np.array_equal(a, b)
        assert loss == results[0][1]


@pytest.mark.parametrize("batch_size", [32, 150])
def test_deeper_models_agree_with_the_python_loop_in_float64(batch_size):
    x, y = _data()
    reference = _deep_model(np.float64)
    reference.fit(x, y, epochs=2, batch_size=batch_size, optimizer=numrec.SGD(0.1), seed=7,
                  fused=False)
    for threads in (2, 3):
        model = _deep_model(np.float64)
        model.fit(x, y, epochs=2, batch_size=batch_size, optimizer=numrec.SGD(0.1), seed=7,
                  threads=threads, fused=True)
        for got, expected in zip(model.parameters(), reference.parameters()):
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("batch_size", [1, 20, 32])
def test_deferred_update_gives_the_same_bits_up_to_batch_32(deep, batch_size):
    """The small top layer's update, computed by another thread while thread 0 passes
    dL/dx down, is the same arithmetic as the update folded into one kernel (one block of
    32 rows)."""
    from numrec._core._training import _deferred_updates
    x, y = _data()
    runs = []
    for defer in (False, True):
        previous = _deferred_updates(defer)
        try:
            model = _deep_model(np.float32) if deep else _model(np.float32)
            history = model.fit(x, y, epochs=2, batch_size=batch_size,
                                optimizer=numrec.SGD(0.3), seed=7, threads=2, fused=True)
        finally:
            _deferred_updates(previous)
        runs.append((model.parameters(), history.loss))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert np.array_equal(a, b)
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("batch_size", [64, 77])
def test_deferred_update_above_batch_32_agrees_to_rounding(batch_size):
    """Beyond 32 rows the deferred update adds the sums of the row blocks before the
    weights (one rounding per weight), not after each block."""
    from numrec._core._training import _deferred_updates
    x, y = _data()
    runs = []
    for defer in (False, True):
        previous = _deferred_updates(defer)
        try:
            model = _model(np.float32)
            model.fit(x[:batch_size], y[:batch_size], epochs=1, batch_size=batch_size,
                      optimizer=numrec.SGD(0.3), seed=7, threads=2, fused=True)
        finally:
            _deferred_updates(previous)
        runs.append(model.parameters())
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _awkward_model(dtype):
    # The shared middle layer (811 inputs, 797 units) has input columns that are not a
    # multiple of 8, so the threads' shares of dL/dx end inside a vector; from 26 rows
    # on, its input gradient is large enough to be shared.
    rng = np.random.default_rng(5)
    return numrec.Sequential([
        numrec.Dense(29, 811, seed=rng, dtype=dtype), numrec.LeakyReLU(0.2),
        numrec.Dense(811, 797, seed=rng, dtype=dtype), numrec.LeakyReLU(0.2),
        numrec.Dense(797, 5, seed=rng, dtype=dtype), numrec.Sigmoid(),
    ])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [7, 64, 128, 150])
def test_input_gradient_shared_by_columns(optimizer, batch_size):
    """The threads share a large Dense layer's dL/dx by input columns in float32 (batch
    7 is too small to share): up to 128 rows the same bits for 1, 2 and 3 threads,
    above (BLAS products) agreement to float32 accuracy; always the float64 Python
    loop's parameters to float32 accuracy."""
    x, y = _data(n=300, n_in=29, n_out=5)
    x = x.astype(np.float32) / 255

    def make(kind):
        return numrec.SGD(0.2) if kind == "sgd" else numrec.Adam(1e-3)

    results = []
    for threads in (1, 2, 3):
        model = _awkward_model(np.float32)
        model.fit(x, y, epochs=1, batch_size=batch_size, optimizer=make(optimizer), seed=3,
                  threads=threads, fused=True)
        results.append(model.parameters())
    for parameters in results[1:]:
        for a, b in zip(results[0], parameters):
            if batch_size <= 128:
                assert np.array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    reference = _awkward_model(np.float64)
    reference.fit(x.astype(np.float64), y, epochs=1, batch_size=batch_size,
                  optimizer=make(optimizer), seed=3, fused=False)
    for parameters in results:
        for got, expected in zip(parameters, reference.parameters()):
            np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4)
