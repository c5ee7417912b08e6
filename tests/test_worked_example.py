"""The reference network's worked example (3 -> 2 -> 3), number for number.

The expected values are the Wolfram outputs of number_recognition's README.  Its
weight derivatives of layer 2 were computed from the six-digit deltas, so they agree
with the exact values to a relative 3e-6, not to the last printed digit: the
comparisons use ``rtol=5e-6`` (six significant digits).
"""
import numpy as np
import pytest

import numrec

RTOL = 5e-6

OUTPUT = [[0.858149, 0.450166, 0.645656]]
DELTA_2 = [0.208924, -0.272186, 0.295432]
GRAD_W2 = [[-0.0052231, 0.287271], [0.00680465, -0.374256], [-0.0073858, 0.406219]]
DELTA_1 = [-0.0733288, 0.366644]
GRAD_W1 = [[-0.0183322, -0.0366644, -0.0549966], [0.091661, 0.183322, 0.274983]]


@pytest.fixture
def worked(seed_network, seed_example):
    """The example network after forward and backward on the example's sample."""
    model = seed_network(np.float64)
    output = model.forward(seed_example["x"])
    grad_output = numrec.MSE().gradient(output, seed_example["y"])
    grad_input = model.backward(grad_output)
    return model, output, grad_output, grad_input


def test_forward_output(worked):
    _, output, _, _ = worked
    assert output.dtype == np.float64
    np.testing.assert_allclose(output, OUTPUT, rtol=RTOL)


def test_hidden_activation(seed_network, seed_example):
    model = seed_network(np.float64)
    first, leaky = model.components[:2]
    z1 = first.forward(seed_example["x"])
    np.testing.assert_allclose(z1, [[-0.125, 1.375]], rtol=1e-15)
    np.testing.assert_allclose(leaky.forward(z1), [[-0.025, 1.375]], rtol=1e-15)


def test_cost(worked, seed_example):
    _, output, _, _ = worked
    expected = float(np.sum((np.array(OUTPUT) - seed_example["y"]) ** 2))
    assert numrec.MSE().value(output, seed_example["y"]) == pytest.approx(expected, rel=1e-5)


def test_delta_2_as_sigmoid_backward(worked, seed_network, seed_example):
    _, output, grad_output, _ = worked
    np.testing.assert_allclose(grad_output, 2 * (output - seed_example["y"]), rtol=1e-15)
    # z2 = w2 a1 + b2 of the README: (1.8, -0.2, 0.6).
    z2 = np.array([[1.8, -0.2, 0.6]])
    a2 = numrec.Sigmoid().forward(z2)
    np.testing.assert_allclose(a2, OUTPUT, rtol=RTOL)
    delta_2 = numrec.Sigmoid().backward(z2, a2, grad_output)
    np.testing.assert_allclose(delta_2, [DELTA_2], rtol=RTOL)


def test_delta_2_is_grad_bias_of_layer_2(worked):
    model = worked[0]
    np.testing.assert_allclose(model.components[2].grad_bias, DELTA_2, rtol=RTOL)


def test_weight_derivatives_of_layer_2(worked):
    model = worked[0]
    np.testing.assert_allclose(model.components[2].grad_weights, GRAD_W2, rtol=RTOL)


def test_delta_1_is_grad_bias_of_layer_1(worked):
    model = worked[0]
    np.testing.assert_allclose(model.components[0].grad_bias, DELTA_1, rtol=RTOL)


def test_weight_derivatives_of_layer_1(worked):
    model = worked[0]
    np.testing.assert_allclose(model.components[0].grad_weights, GRAD_W1, rtol=RTOL)


def test_gradient_with_respect_to_input(worked, seed_example):
    _, _, _, grad_input = worked
    # dC/da0 = w1^T delta1
    expected = np.array(DELTA_1) @ seed_example["w1"]
    np.testing.assert_allclose(grad_input, [expected], rtol=1e-5)


def test_gradients_list_matches_layers(worked):
    model = worked[0]
    first, second = model.components[0], model.components[2]
    grads = model.gradients()
    assert len(grads) == 4
    for got, expected in zip(grads, [first.grad_weights, first.grad_bias,
                                     second.grad_weights, second.grad_bias]):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_one_fit_step_is_weights_minus_lr_grad(seed_network, seed_example, fused):
    lr = 0.5
    reference = seed_network(np.float64)
    reference.backward(numrec.MSE().gradient(reference.forward(seed_example["x"]),
                                             seed_example["y"]))
    expected = [param - lr * grad
                for param, grad in zip(reference.parameters(), reference.gradients())]

    model = seed_network(np.float64)
    history = model.fit(seed_example["x"], seed_example["y"], epochs=1, batch_size=1,
                        loss=numrec.MSE(), optimizer=numrec.SGD(lr=lr), seed=0,
                        fused=fused)
    assert history.fused is fused
    for got, want in zip(model.parameters(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # The same step against the README's own numbers.
    np.testing.assert_allclose(model.components[2].weights,
                               seed_example["w2"] - lr * np.array(GRAD_W2), atol=1e-6)
    np.testing.assert_allclose(model.components[2].bias,
                               seed_example["b2"] - lr * np.array(DELTA_2), atol=1e-6)
    np.testing.assert_allclose(model.components[0].weights,
                               seed_example["w1"] - lr * np.array(GRAD_W1), atol=1e-6)
    np.testing.assert_allclose(model.components[0].bias,
                               seed_example["b1"] - lr * np.array(DELTA_1), atol=1e-6)
    # The recorded loss is the cost before the step.
    cost = float(np.sum((np.array(OUTPUT) - seed_example["y"]) ** 2))
    assert history.loss == [pytest.approx(cost, rel=1e-5)]
