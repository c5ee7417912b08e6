"""Randomness is seeded: the same seed gives bit-identical weights, before and after fit."""
import numpy as np
import pytest

import numrec


def parameters_equal(model_a, model_b):
    params_a, params_b = model_a.parameters(), model_b.parameters()
    assert len(params_a) == len(params_b) > 0
    return all(np.array_equal(a, b) for a, b in zip(params_a, params_b))


def parameters_all_differ(model_a, model_b):
    return all(not np.array_equal(a, b)
               for a, b in zip(model_a.parameters(), model_b.parameters())
               if np.any(a) or np.any(b))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(200, 784), dtype=np.uint8)
    y = rng.integers(0, 10, size=200)
    return x, y


# --- initialisation ------------------------------------------------------------------------

def test_dense_same_seed_same_weights():
    a, b = numrec.Dense(20, 7, seed=42), numrec.Dense(20, 7, seed=42)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.bias, b.bias)


def test_dense_different_seeds_different_weights():
    a, b = numrec.Dense(20, 7, seed=1), numrec.Dense(20, 7, seed=2)
    assert not np.any(a.weights == b.weights)


def test_dense_generator_seed_is_reproducible():
    a = numrec.Dense(20, 7, seed=np.random.default_rng(5))
    b = numrec.Dense(20, 7, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weights, b.weights)


def test_dense_shared_generator_advances():
    rng = np.random.default_rng(5)
    a, b = numrec.Dense(20, 7, seed=rng), numrec.Dense(20, 7, seed=rng)
    assert not np.array_equal(a.weights, b.weights)


def test_dense_without_seed_is_random():
    assert not np.array_equal(numrec.Dense(20, 7).weights, numrec.Dense(20, 7).weights)


def test_he_initialisation():
    layer = numrec.Dense(784, 256, seed=0, dtype=np.float64)
    weights = layer.weights
    assert weights.shape == (256, 784)
    assert layer.bias.shape == (256,)
    np.testing.assert_array_equal(layer.bias, np.zeros(256))
    np.testing.assert_array_equal(layer.grad_weights, np.zeros((256, 784)))
    std = np.sqrt(2 / 784)
    # 200704 samples: the sample mean and std are within a few parts per thousand.
    assert abs(weights.mean()) < 0.01 * std
    assert weights.std() == pytest.approx(std, rel=0.01)
    # normal, not uniform: about 68.3 % within one standard deviation
    assert np.mean(np.abs(weights) < std) == pytest.approx(0.6827, abs=0.005)


def test_mnist_mlp_same_seed_same_weights():
    assert parameters_equal(numrec.mnist_mlp(seed=3), numrec.mnist_mlp(seed=3))


def test_mnist_mlp_different_seeds_different_weights():
    assert parameters_all_differ(numrec.mnist_mlp(seed=3), numrec.mnist_mlp(seed=4))


def test_mnist_mlp_layers_are_not_copies_of_each_other():
    model = numrec.mnist_mlp(hidden=(10, 10), seed=0)
    dense = [c for c in model.components if isinstance(c, numrec.Dense)]
    assert dense[1].weights.shape == dense[2].weights.shape == (10, 10)
    assert not np.any(dense[1].weights == dense[2].weights)


# --- training ------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_same_seeds_bit_identical_after_fit(data, fused):
    x, y = data
    models, histories = [], []
    for _ in range(2):
        model = numrec.mnist_mlp(hidden=(32,), seed=10)
        histories.append(model.fit(x, y, epochs=2, batch_size=16, seed=11, fused=fused))
        models.append(model)
    assert histories[0].fused is fused
    assert parameters_equal(*models)
    assert histories[0].loss == histories[1].loss
    assert not parameters_equal(models[0], numrec.mnist_mlp(hidden=(32,), seed=10))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_different_init_seeds_differ_after_fit(data, fused):
    x, y = data
    a, b = numrec.mnist_mlp(hidden=(32,), seed=10), numrec.mnist_mlp(hidden=(32,), seed=12)
    a.fit(x, y, epochs=1, batch_size=16, seed=11, fused=fused)
    b.fit(x, y, epochs=1, batch_size=16, seed=11, fused=fused)
    assert parameters_all_differ(a, b)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_shuffle_seed_changes_the_result(data, fused):
    x, y = data
    a, b = numrec.mnist_mlp(hidden=(32,), seed=10), numrec.mnist_mlp(hidden=(32,), seed=10)
    a.fit(x, y, epochs=1, batch_size=16, seed=1, fused=fused)
    b.fit(x, y, epochs=1, batch_size=16, seed=2, fused=fused)
    assert parameters_all_differ(a, b)


def test_shuffle_seed_as_generator(data):
    x, y = data
    a, b = numrec.mnist_mlp(hidden=(32,), seed=10), numrec.mnist_mlp(hidden=(32,), seed=10)
    a.fit(x, y, epochs=2, batch_size=16, seed=np.random.default_rng(7))
    b.fit(x, y, epochs=2, batch_size=16, seed=np.random.default_rng(7))
    assert parameters_equal(a, b)


def test_each_epoch_uses_a_new_order(data):
    # Two epochs from one seed differ from one epoch repeated with that seed.
    x, y = data
    a, b = numrec.mnist_mlp(hidden=(32,), seed=10), numrec.mnist_mlp(hidden=(32,), seed=10)
    a.fit(x, y, epochs=2, batch_size=16, seed=3)
    b.fit(x, y, epochs=1, batch_size=16, seed=3)
    b.fit(x, y, epochs=1, batch_size=16, seed=3)
    assert parameters_all_differ(a, b)


def test_fused_and_fallback_shuffle_alike(data):
    # Same seeds: the two loops visit the batches in the same order (float64, close).
    x, y = data
    a = numrec.mnist_mlp(hidden=(32,), seed=10, dtype=np.float64)
    b = numrec.mnist_mlp(hidden=(32,), seed=10, dtype=np.float64)
    a.fit(x, y, epochs=1, batch_size=16, seed=5, fused=True)
    b.fit(x, y, epochs=1, batch_size=16, seed=5, fused=False)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
