"""``copy.deepcopy`` and ``pickle`` of models and components (a "best model" copy, joblib)."""
import copy
import pickle

import numpy as np
import pytest

import numrec
from python_components import PyDense, PySigmoid


def trained_model(dtype=np.float32):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 12)).astype(dtype), rng.integers(0, 3, 64)
    model = numrec.Sequential([numrec.Dense(12, 8, seed=1, dtype=dtype), numrec.LeakyReLU(0.1),
                               numrec.Dense(8, 3, seed=2, dtype=dtype), numrec.Sigmoid()])
    model.fit(x, y, epochs=2, optimizer=numrec.SGD(0.3), seed=0)
    return model, x, y


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
def test_a_copy_predicts_the_same_and_trains_on_its_own(clone):
    model, x, y = trained_model()
    twin = clone(model)
    assert repr(twin) == repr(model) and type(twin.loss) is numrec.MSE
    np.testing.assert_array_equal(twin.predict(x), model.predict(x))
    before = [param.copy() for param in model.parameters()]
    twin.fit(x, y, epochs=1, optimizer=numrec.SGD(0.3), seed=1)
    for original, kept in zip(model.parameters(), before):
        np.testing.assert_array_equal(original, kept)  # the copy owns its arrays
    assert not np.array_equal(twin.parameters()[0], before[0])


def test_components_keep_their_settings():
    for component in (numrec.LeakyReLU(0.05), numrec.Dense(3, 2, dtype=np.float64),
                      numrec.MSE(), numrec.SGD(0.1, momentum=0.9, nesterov=True)):
        twin = pickle.loads(pickle.dumps(component))
        assert type(twin) is type(component) and repr(twin) == repr(component)


def test_python_written_components_copy_their_attributes():
    rng = np.random.default_rng(2)
    layer = PyDense(rng.random((3, 4)).astype(np.float32), np.zeros(3, np.float32))
    activation = PySigmoid()
    layer.note = "kept"
    twin = copy.deepcopy(layer)
    assert twin.note == "kept" and twin is not layer
    x = np.random.default_rng(1).random((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(twin.forward(x), layer.forward(x))
    np.testing.assert_array_equal(copy.deepcopy(activation).forward(x), activation.forward(x))


def test_a_python_subclass_of_a_built_in_keeps_both_kinds_of_state():
    class Tagged(numrec.LeakyReLU):
        pass

    activation = Tagged(0.3)
    activation.tag = 7
    twin = copy.deepcopy(activation)
    assert (type(twin), twin.alpha, twin.tag) == (Tagged, 0.3, 7)
