"""``Dense(init=...)``: each rule draws from the distribution its docstring states."""
import numpy as np
import pytest

import numrec

IN, OUT = 400, 300


def moments_match(values, low, high=None, *, std=None):
    """Mean 0 and the stated spread, within five standard errors of the estimates."""
    n = values.size
    if std is None:
        std = (high - low) / np.sqrt(12)
        assert values.min() >= low and values.max() <= high
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low)
    assert abs(values.mean()) < 5 * std / np.sqrt(n)
    # The sample variance of n draws has a standard error of about std**2 * sqrt(2 / n)
    # (a little more for the uniform's kurtosis does not matter at 5 errors).
    assert abs(values.var() - std ** 2) < 5 * std ** 2 * np.sqrt(2 / n)


def test_he_is_the_default_and_normal_with_variance_two_over_fan_in():
    default = numrec.Dense(IN, OUT, seed=3, dtype=np.float64)
    he = numrec.Dense(IN, OUT, seed=3, dtype=np.float64, init="he")
    assert np.array_equal(default.weights, he.weights)
    moments_match(he.weights, None, std=np.sqrt(2 / IN))
    assert not he.bias.any()


@pytest.mark.parametrize("name", ["glorot", "xavier"])
def test_glorot_is_uniform_within_sqrt_six_over_fans(name):
    layer = numrec.Dense(IN, OUT, seed=4, dtype=np.float64, init=name)
    limit = np.sqrt(6 / (IN + OUT))
    moments_match(layer.weights, -limit, limit)
    assert not layer.bias.any()


def test_uniform_is_the_reference_codes_minus_one_to_one():
    layer = numrec.Dense(IN, OUT, seed=5, dtype=np.float64, init="uniform")
    moments_match(layer.weights, -1.0, 1.0)
    assert not layer.bias.any()


def test_torch_rule_draws_weights_and_biases_like_nn_linear():
    layer = numrec.Dense(IN, OUT, seed=6, dtype=np.float64, init="torch")
    bound = 1 / np.sqrt(IN)
    moments_match(layer.weights, -bound, bound)
    assert np.all(np.abs(layer.bias) <= bound) and np.unique(layer.bias).size == OUT


def test_torch_rule_has_the_bounds_of_pytorch_itself():
    torch = pytest.importorskip("torch", reason="compares with torch.nn.Linear's own draw")
    torch.manual_seed(0)
    linear = torch.nn.Linear(IN, OUT)
    ours = numrec.Dense(IN, OUT, seed=0, init="torch")
    for theirs, mine in ((linear.weight, ours.weights), (linear.bias, ours.bias)):
        theirs = theirs.detach().numpy()
        assert abs(np.abs(theirs).max() - np.abs(mine).max()) < 0.02 / np.sqrt(IN)
        assert theirs.std() == pytest.approx(mine.std(), rel=0.1)


def test_same_seed_same_weights_for_every_rule():
    for name in ("he", "glorot", "uniform", "torch"):
        a = numrec.Dense(20, 10, seed=7, init=name)
        b = numrec.Dense(20, 10, seed=7, init=name)
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)


def test_unknown_rule_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="init must be one of .*'glorot'.*got 'kaiming'"):
        numrec.Dense(3, 2, init="kaiming")


def test_the_rule_is_not_part_of_the_saved_config(tmp_path):
    layer = numrec.Dense(6, 4, seed=8, init="uniform")
    assert "init" not in layer.get_config()
    model = numrec.Sequential([layer, numrec.Sigmoid()])
    model.save(tmp_path / "m.npz")
    loaded = numrec.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.components[0].weights, layer.weights)
