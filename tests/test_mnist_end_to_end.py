"""The reference job: the 784 -> 256 -> 10 network passes 96 % on the MNIST test set."""
import numpy as np
import pytest

import numrec


def test_mnist_files(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert x_train.max() == 255 and x_train.min() == 0


@pytest.fixture(scope="module")
def trained(mnist):
    """The reference network trained as number_recognition trains it (once per module)."""
    (x_train, y_train), (x_test, y_test) = mnist
    model = numrec.mnist_mlp(seed=0)
    history = model.fit(
        x_train, y_train, epochs=10, batch_size=32, loss=numrec.MSE(),
        optimizer=numrec.SGD(lr=0.5), validation_data=(x_test, y_test),
        target_accuracy=0.96, seed=0,
    )
    return model, history


def test_reference_network_reaches_96_percent(trained):
    _, history = trained
    assert history.fused is True
    assert history.reached_target is True
    assert history.val_accuracy[-1] > 0.96
    assert all(acc <= 0.96 for acc in history.val_accuracy[:-1])  # stopped at the first
    assert 1 <= history.epochs <= 10
    assert all(np.isfinite(history.loss))
    assert history.loss == sorted(history.loss, reverse=True)


def test_predictions_agree_with_history(trained, mnist):
    model, history = trained
    _, (x_test, y_test) = mnist
    classes = model.predict_classes(x_test)
    assert np.mean(classes == y_test) == pytest.approx(history.val_accuracy[-1], abs=1e-12)


def test_evaluate_agrees_with_history(trained, mnist):
    model, history = trained
    _, (x_test, y_test) = mnist
    result = model.evaluate(x_test, y_test)
    assert result["accuracy"] == pytest.approx(history.val_accuracy[-1], abs=1e-12)
    one_hot = np.eye(10)[y_test]
    output = model.predict(x_test).astype(np.float64)
    assert result["loss"] == pytest.approx(np.sum((output - one_hot) ** 2) / len(x_test),
                                           rel=1e-5)
