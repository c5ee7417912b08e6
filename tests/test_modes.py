"""Training and evaluation modes: Sequential.train / eval and Layer.training."""
import copy
import pickle

import numpy as np
import pytest

import numrec


class ModeRecorder(numrec.Layer):
    """An identity layer that records the mode of every call."""

    def __init__(self):
        self.seen = []

    def forward(self, x):
        self.seen.append(("forward", self.training))
        return x

    def backward(self, grad_output):
        return grad_output

    def forward_pass(self, x):
        self.seen.append(("forward_pass", self.training))
        return x


def model_with_recorder(seed=0):
    recorder = ModeRecorder()
    dense = numrec.Dense(6, 3, seed=seed)
    return numrec.Sequential([recorder, dense, numrec.Sigmoid()]), recorder, dense


def data(n=40):
    rng = np.random.default_rng(1)
    return rng.random((n, 6), dtype=np.float32), rng.integers(0, 3, n)


def test_layers_start_in_training_mode():
    model, recorder, dense = model_with_recorder()
    assert model.training and recorder.training and dense.training


def test_train_and_eval_set_every_layer_and_return_the_model():
    model, recorder, dense = model_with_recorder()
    assert model.eval() is model
    assert (model.training, recorder.training, dense.training) == (False, False, False)
    assert model.train() is model
    assert (model.training, recorder.training, dense.training) == (True, True, True)
    model.train(False)
    assert not dense.training


def test_train_refuses_a_mode_that_is_not_a_bool():
    model, _, _ = model_with_recorder()
    with pytest.raises(TypeError, match="mode must be True or False"):
        model.train("eval")


def test_fit_trains_in_training_mode_and_validates_in_evaluation_mode():
    model, recorder, _ = model_with_recorder()
    x, y = data()
    model.eval()
    model.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y), seed=0)
    passes = [mode for kind, mode in recorder.seen if kind == "forward_pass"]
    forwards = [mode for kind, mode in recorder.seen if kind == "forward"]
    assert len(passes) == 2 * 5 and all(passes)
    assert forwards and not any(forwards)
    assert not model.training and not recorder.training  # restored


def test_predict_and_evaluate_run_in_evaluation_mode_and_restore_the_mode():
    model, recorder, _ = model_with_recorder()
    x, y = data()
    model.predict(x)
    model.evaluate(x, y)
    assert recorder.seen and not any(mode for _, mode in recorder.seen)
    assert model.training and recorder.training


def test_mode_is_restored_when_predict_raises():
    model, recorder, _ = model_with_recorder()
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 5), np.float32))
    assert recorder.training


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copies_keep_each_layers_mode(clone):
    dense = numrec.Dense(4, 2, seed=0)
    dense.training = False
    assert clone(dense).training is False
    model = numrec.Sequential([numrec.Dense(4, 2, seed=0), numrec.Sigmoid()]).eval()
    assert clone(model).components[0].training is False
