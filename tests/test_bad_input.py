"""Malformed input gets a clear error naming the argument; nothing crashes the interpreter."""
import re

import numpy as np
import pytest

import numrec


@pytest.fixture
def dense():
    return numrec.Dense(3, 2, seed=0)


@pytest.fixture
def model():
    return numrec.Sequential([
        numrec.Dense(4, 5, seed=0), numrec.LeakyReLU(0.2),
        numrec.Dense(5, 3, seed=1), numrec.Sigmoid(),
    ])


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 4)).astype(np.float32), rng.integers(0, 3, size=12)


# --- shapes --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 4), (2, 2), (3,), (1, 2, 3), (3, 1)])
def test_dense_forward_wrong_shape(dense, shape):
    with pytest.raises(ValueError, match=re.escape("x must have shape (n, 3)")):
        dense.forward(np.ones(shape, dtype=np.float32))


def test_dense_backward_wrong_shape(dense):
    dense.forward(np.ones((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("grad_output must have shape (4, 2)")):
        dense.backward(np.ones((5, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("grad_output must have shape (4, 2)")):
        dense.backward(np.ones((4, 3), dtype=np.float32))


def test_weights_setter_wrong_shape(dense):
    before = dense.weights.copy()
    with pytest.raises(ValueError, match=re.escape("weights must have shape (2, 3), got (3, 2)")):
        dense.weights = np.ones((3, 2), dtype=np.float32)
    np.testing.assert_array_equal(dense.weights, before)
    with pytest.raises(ValueError, match=re.escape("bias must have shape (2,), got (3,)")):
        dense.bias = np.ones(3, dtype=np.float32)


def test_weights_setter_wrong_dtype_and_values(dense):
    with pytest.raises(TypeError, match="weights must have dtype float32, got float64"):
        dense.weights = np.ones((2, 3))
    with pytest.raises(TypeError, match="weights must be a numpy array"):
        dense.weights = [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="weights contains NaN or infinity"):
        dense.weights = np.full((2, 3), np.nan, dtype=np.float32)


@pytest.mark.parametrize("shape", [(2, 3), (2,), (2, 4, 1)])
def test_sequential_wrong_width(model, shape):
    with pytest.raises(ValueError, match=re.escape("x must have shape (n, 4)")):
        model.forward(np.ones(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("x must have shape (n, 4)")):
        model.predict(np.ones(shape, dtype=np.float32))


def test_fit_wrong_width(model, xy):
    x, y = xy
    with pytest.raises(ValueError, match=re.escape("x must have shape (n, 4)")):
        model.fit(x[:, :3], y)


def test_fit_length_mismatch(model, xy):
    x, y = xy
    with pytest.raises(ValueError, match="x and y must have the same number of samples"):
        model.fit(x, y[:-1])
    with pytest.raises(ValueError, match="x and y must have the same number of samples"):
        model.fit(x, np.eye(3)[y][:5])


def test_validation_length_mismatch(model, xy):
    x, y = xy
    with pytest.raises(ValueError, match="x_val and y_val must have the same number of samples"):
        model.fit(x, y, validation_data=(x, y[:4]))


def test_target_rows_of_wrong_width(model, xy):
    x, y = xy
    with pytest.raises(ValueError, match=re.escape("y must have shape (12, 3)")):
        model.fit(x, np.ones((12, 4)))


def test_evaluate_length_mismatch(model, xy):
    x, y = xy
    with pytest.raises(ValueError, match="x and y must have the same number of samples"):
        model.evaluate(x, y[:3])


def test_validation_data_not_a_pair(model, xy):
    x, y = xy
    message = re.escape("validation_data must be a pair (x_val, y_val)")
    with pytest.raises(TypeError, match=message):
        model.fit(x, y, validation_data=x)


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("target must have shape (2, 3)")):
        numrec.MSE().value(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=re.escape("target must have shape (2, 3)")):
        numrec.MSE().gradient(np.ones((2, 3)), np.ones((2,)))


def test_activation_backward_shape_mismatch():
    z = np.ones((2, 3))
    with pytest.raises(ValueError, match="grad_a must have the shape of z"):
        numrec.Sigmoid().backward(z, z, np.ones((3, 2)))


def test_sgd_step_mismatches():
    sgd = numrec.SGD(0.1)
    with pytest.raises(ValueError, match="parameters and gradients must have the same length"):
        sgd.step([np.ones(3)], [])
    with pytest.raises(ValueError, match=re.escape("gradients[0] must have shape (3,)")):
        sgd.step([np.ones(3)], [np.ones(4)])
    with pytest.raises(TypeError, match=re.escape("parameters[0] and gradients[0] must share")):
        sgd.step([np.ones(3)], [np.ones(3, dtype=np.float32)])
    message = re.escape("parameters[0] must be a writeable C-contiguous")
    with pytest.raises(ValueError, match=message):
        sgd.step([np.ones((3, 4))[:, ::2]], [np.ones((3, 2))])
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=re.escape("parameters[0] must be a writeable")):
        sgd.step([frozen], [np.ones(3)])
    np.testing.assert_array_equal(frozen, np.ones(3))


# --- dtypes --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "array, got",
    [
        (np.ones((2, 3), dtype=np.int64), "int64"),
        (np.ones((2, 3), dtype=np.float64), "float64"),
        (np.ones((2, 3), dtype=np.float16), "float16"),
        (np.array([["a", "b", "c"]]), "<U1"),
        (np.array([[1.0, None, 2.0]], dtype=object), "object"),
    ],
    ids=["int", "float64", "float16", "str", "object"],
)
def test_dense_forward_wrong_dtype(dense, array, got):
    with pytest.raises(TypeError, match=re.escape(f"x must have dtype float32, got {got}")):
        dense.forward(array)


def test_dense_forward_not_an_array(dense):
    with pytest.raises(TypeError, match="x must be a numpy array, got list"):
        dense.forward([[1.0, 2.0, 3.0]])


def test_float64_dense_rejects_float32(dense):
    layer = numrec.Dense(3, 2, dtype=np.float64)
    with pytest.raises(TypeError, match="x must have dtype float64, got float32"):
        layer.forward(np.ones((1, 3), dtype=np.float32))
    layer.forward(np.ones((1, 3)))
    with pytest.raises(TypeError, match="grad_output must have dtype float64, got float32"):
        layer.backward(np.ones((1, 2), dtype=np.float32))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((2, 4), dtype=np.int32), "x must hold floats or uint8 pixels, got dtype int32"),
        (np.ones((2, 4), dtype=bool), "x must hold real numbers, got dtype bool"),
        (np.ones((2, 4), dtype=complex), "x must hold real numbers, got dtype complex128"),
        (np.array([["a"] * 4]), "x must hold real numbers"),
        (np.ones((2, 4), dtype=object), "x must hold real numbers, got dtype object"),
    ],
    ids=["int32", "bool", "complex", "str", "object"],
)
def test_sequential_wrong_dtype(model, xy, array, message):
    _, y = xy
    with pytest.raises(TypeError, match=re.escape(message)):
        model.forward(array)
    with pytest.raises(TypeError, match=re.escape(message)):
        model.predict(array)
    with pytest.raises(TypeError, match=re.escape(message)):
        model.fit(array, y[:len(array)])


def test_sequential_x_not_an_array(model):
    with pytest.raises(TypeError, match="x must be a numpy array, got list"):
        model.predict([[0.0] * 4])


def test_float_labels_rejected(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="y must hold integer class labels, got dtype float64"):
        model.fit(x, y.astype(np.float64))


def test_integer_target_rows_rejected(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="y must hold floats when 2-D, got dtype int64"):
        model.fit(x, np.eye(3, dtype=np.int64)[y])


def test_y_not_an_array(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="y must be a numpy array, got list"):
        model.fit(x, list(y))


def test_activation_rejects_integer_arrays():
    with pytest.raises(TypeError, match="z must have dtype float32 or float64, got int32"):
        numrec.Sigmoid().forward(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(TypeError, match="z must be a numpy array"):
        numrec.LeakyReLU().forward([[1.0, -1.0]])


def test_loss_dtype_mismatch():
    with pytest.raises(TypeError, match="target must have dtype float64, got float32"):
        numrec.MSE().value(np.ones((2, 2)), np.ones((2, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="output must have dtype float32 or float64, got int64"):
        numrec.MSE().gradient(np.ones((2, 2), dtype=np.int64), np.ones((2, 2)))


def test_mixed_dtypes_in_sequential():
    with pytest.raises(TypeError, match="all layers must share one dtype"):
        numrec.Sequential([numrec.Dense(3, 2), numrec.Dense(2, 2, dtype=np.float64)])


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "banana"])
def test_dense_bad_dtype_argument(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        numrec.Dense(3, 2, dtype=dtype)


# --- non-finite values ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x(dense, model, xy, bad):
    x, y = xy
    x = x.copy()
    x[3, 1] = bad
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        dense.forward(np.full((1, 3), bad, dtype=np.float32))
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        model.forward(x)
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        model.fit(x, y)
    with pytest.raises(ValueError, match="x_val contains NaN or infinity"):
        model.fit(xy[0], y, validation_data=(x, y))


@pytest.mark.parametrize("where", [0, 1, "middle", -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_all_finite_finds_one_bad_entry_in_any_chunk(where, bad, dtype):
    """The chunked check against NumPy's whole-array one, on more entries than a chunk."""
    from numrec._core._validation import FINITE_CHUNK, all_finite
    n = 7 * (FINITE_CHUNK // 3 + 5)    # three chunks, the last one short
    x = np.linspace(-1e3, 1e3, n).astype(dtype).reshape(-1, 7)
    assert all_finite(x) and all_finite(x.T) and all_finite(x[:3])
    index = {"middle": n // 2 + 5}.get(where, where)
    x.reshape(-1)[index] = bad
    assert not np.isfinite(x).all()
    assert not all_finite(x) and not all_finite(x.T)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_targets(model, xy, bad):
    x, y = xy
    target = np.eye(3)[y]
    target[5, 2] = bad
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        model.fit(x, target)
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        model.evaluate(x, target)


def test_non_finite_gradient_into_dense(dense):
    dense.forward(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="grad_output contains NaN or infinity"):
        dense.backward(np.array([[np.nan, 0.0]], dtype=np.float32))


# --- labels --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_label", [3, -1, 100])
def test_labels_out_of_range(model, xy, bad_label):
    x, y = xy
    y = y.copy()
    y[4] = bad_label
    with pytest.raises(ValueError, match=re.escape("y must hold labels in 0..2")):
        model.fit(x, y)
    with pytest.raises(ValueError, match=re.escape("y_val must hold labels in 0..2")):
        model.fit(x, xy[1], validation_data=(x, y))


# --- fit arguments -------------------------------------------------------------------------

def test_unknown_keyword_to_fit(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="learning_rate"):
        model.fit(x, y, learning_rate=0.1)
    with pytest.raises(TypeError, match="epoch"):
        model.fit(x, y, epoch=3)


@pytest.mark.parametrize("name", ["epochs", "batch_size"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_counts(model, xy, name, value):
    x, y = xy
    with pytest.raises(ValueError, match=f"{name} must be at least 1, got {value}"):
        model.fit(x, y, **{name: value})


@pytest.mark.parametrize("name", ["epochs", "batch_size"])
@pytest.mark.parametrize("value, kind", [(2.0, "float"), (float("nan"), "float"),
                                         (True, "bool"), ("3", "str"), (None, "NoneType")])
def test_non_integer_counts(model, xy, name, value, kind):
    x, y = xy
    with pytest.raises(TypeError, match=f"{name} must be an integer, got {kind}"):
        model.fit(x, y, **{name: value})


def test_numpy_integers_are_accepted_as_counts(model, xy):
    x, y = xy
    history = model.fit(x, y, epochs=np.int64(2), batch_size=np.int32(5), seed=0)
    assert history.epochs == 2


@pytest.mark.parametrize("value, message", [
    (0, "lr must be positive"), (-0.1, "lr must be positive"),
    (float("nan"), "lr must be finite"), (float("inf"), "lr must be finite"),
])
def test_bad_learning_rate_values(value, message):
    with pytest.raises(ValueError, match=message):
        numrec.SGD(lr=value)


@pytest.mark.parametrize("value, kind", [("0.1", "str"), (None, "NoneType"), (True, "bool")])
def test_bad_learning_rate_types(value, kind):
    with pytest.raises(TypeError, match=f"lr must be a number, got {kind}"):
        numrec.SGD(lr=value)


def test_predict_bad_batch_size(model, xy):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        model.predict(xy[0], batch_size=0)


def test_non_loss_passed_as_loss(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="loss must be a numrec.Loss, got str"):
        model.fit(x, y, loss="mse")
    with pytest.raises(TypeError, match="loss must be a numrec.Loss, got SGD"):
        model.fit(x, y, loss=numrec.SGD(0.1))
    with pytest.raises(TypeError, match="loss must be a numrec.Loss, got function"):
        model.evaluate(x, y, loss=lambda a, b: 0.0)


def test_non_optimizer_passed_as_optimizer(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="optimizer must be a numrec.Optimizer, got MSE"):
        model.fit(x, y, optimizer=numrec.MSE())
    with pytest.raises(TypeError, match="optimizer must be a numrec.Optimizer, got float"):
        model.fit(x, y, optimizer=0.5)


def test_target_accuracy_needs_validation(model, xy):
    x, y = xy
    with pytest.raises(ValueError, match="target_accuracy needs validation_data"):
        model.fit(x, y, target_accuracy=0.9)
    with pytest.raises(ValueError, match="target_accuracy must be finite"):
        model.fit(x, y, validation_data=(x, y), target_accuracy=float("nan"))


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed(model, xy, seed):
    x, y = xy
    with pytest.raises(TypeError, match="seed must be None, a non-negative integer"):
        model.fit(x, y, seed=seed)
    with pytest.raises(TypeError, match="seed must be None, a non-negative integer"):
        numrec.Dense(3, 2, seed=seed)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_divergence_raises_diverged_error(fused):
    # No sigmoid on the output: with a huge learning rate the loss overflows.
    rng = np.random.default_rng(0)
    model = numrec.Sequential([
        numrec.Dense(4, 8, seed=0, dtype=np.float64), numrec.LeakyReLU(0.2),
        numrec.Dense(8, 3, seed=1, dtype=np.float64),
    ])
    x = rng.standard_normal((64, 4)) * 100
    with pytest.raises(numrec.DivergedError, match="lower learning rate"):
        model.fit(x, rng.integers(0, 3, size=64), epochs=5, optimizer=numrec.SGD(lr=1e6),
                  seed=0, fused=fused)


# --- constructors --------------------------------------------------------------------------

@pytest.mark.parametrize("args, exc, message", [
    ((0, 3), ValueError, "in_features must be at least 1, got 0"),
    ((3, -2), ValueError, "out_features must be at least 1, got -2"),
    ((2.5, 3), TypeError, "in_features must be an integer, got float"),
    (("3", 3), TypeError, "in_features must be an integer, got str"),
])
def test_dense_bad_sizes(args, exc, message):
    with pytest.raises(exc, match=message):
        numrec.Dense(*args)


@pytest.mark.parametrize("alpha, exc, message", [
    (-0.1, ValueError, "alpha must be at least 0"),
    (float("nan"), ValueError, "alpha must be finite"),
    ("0.2", TypeError, "alpha must be a number"),
])
def test_leaky_relu_bad_alpha(alpha, exc, message):
    with pytest.raises(exc, match=message):
        numrec.LeakyReLU(alpha)


def test_sequential_of_non_components():
    expected = re.escape("must be a Layer or an Activation, got ")
    with pytest.raises(TypeError, match=re.escape("components[1] ") + expected + "str"):
        numrec.Sequential([numrec.Dense(3, 2), "relu"])
    with pytest.raises(TypeError, match=re.escape("components[0] ") + expected + "MSE"):
        numrec.Sequential([numrec.MSE()])
    with pytest.raises(TypeError, match=re.escape("components[1] ") + expected + "ufunc"):
        numrec.Sequential([numrec.Dense(3, 2), np.tanh])


def test_empty_sequential():
    with pytest.raises(ValueError, match="components must hold at least one layer"):
        numrec.Sequential([])


def test_mismatched_dense_widths():
    with pytest.raises(ValueError, match=re.escape("components[2]") + ".*expects 4 inputs but "
                                         "the layer before it gives 5"):
        numrec.Sequential([numrec.Dense(3, 5), numrec.Sigmoid(), numrec.Dense(4, 2)])


def test_mnist_mlp_bad_hidden():
    with pytest.raises(ValueError, match="hidden must be at least 1"):
        numrec.mnist_mlp(hidden=(0,))
    with pytest.raises(TypeError, match="hidden must be an integer"):
        numrec.mnist_mlp(hidden=(2.5,))


# --- order of calls and abstract classes ---------------------------------------------------

def test_dense_backward_before_forward():
    with pytest.raises(RuntimeError, match="Dense.backward called before forward"):
        numrec.Dense(3, 2).backward(np.ones((1, 2), dtype=np.float32))


def test_sequential_backward_before_forward(model):
    with pytest.raises(RuntimeError, match="Sequential.backward called before forward"):
        model.backward(np.ones((1, 3), dtype=np.float32))


@pytest.mark.parametrize("base, methods", [
    (numrec.Layer, "forward and backward"),
    (numrec.Activation, "forward"),
    (numrec.Loss, "value and gradient"),
    (numrec.Optimizer, "step"),
])
def test_abstract_bases_cannot_be_instantiated(base, methods):
    message = f"{base.__name__} is abstract: subclass it and implement {methods}"
    with pytest.raises(TypeError, match=message):
        base()


def test_subclass_missing_methods_raises_not_implemented():
    class BareActivation(numrec.Activation):
        pass

    class BareLayer(numrec.Layer):
        pass

    class BareLoss(numrec.Loss):
        pass

    class BareOptimizer(numrec.Optimizer):
        pass

    z = np.ones((1, 2))
    message = re.escape("BareActivation must implement forward(z)")
    with pytest.raises(NotImplementedError, match=message):
        BareActivation().forward(z)
    with pytest.raises(NotImplementedError, match="BareActivation must implement derivative"):
        BareActivation().backward(z, z, z)
    message = re.escape("BareLayer must implement forward(x)")
    with pytest.raises(NotImplementedError, match=message):
        BareLayer().forward(z)
    with pytest.raises(NotImplementedError, match="BareLayer must implement backward"):
        BareLayer().backward(z)
    with pytest.raises(NotImplementedError, match="BareLoss must implement value"):
        BareLoss().value(z, z)
    with pytest.raises(NotImplementedError, match="BareLoss must implement gradient"):
        BareLoss().gradient(z, z)
    with pytest.raises(NotImplementedError, match="BareOptimizer must implement step"):
        BareOptimizer().step([z], [z])


# --- no crash: empty, 1-D, 3-D and non-contiguous arrays -----------------------------------

def test_empty_batches_do_not_crash(dense, model):
    z = dense.forward(np.empty((0, 3), dtype=np.float32))
    assert z.shape == (0, 2)
    assert dense.backward(np.empty((0, 2), dtype=np.float32)).shape == (0, 3)
    np.testing.assert_array_equal(dense.grad_weights, np.zeros((2, 3)))
    assert model.forward(np.empty((0, 4), dtype=np.float32)).shape == (0, 3)
    assert model.predict(np.empty((0, 4), dtype=np.float32)).shape == (0, 3)
    assert model.predict_classes(np.empty((0, 4), dtype=np.uint8)).shape == (0,)
    assert numrec.Sigmoid().forward(np.empty((0, 3))).shape == (0, 3)
    numrec.SGD(0.1).step([np.empty(0)], [np.empty(0)])


def test_empty_training_set(model):
    with pytest.raises(ValueError, match="x must hold at least one sample"):
        model.fit(np.empty((0, 4), dtype=np.float32), np.empty(0, dtype=np.int64))


def test_one_dimensional_and_three_dimensional_x(model, xy):
    _, y = xy
    for shape in [(4,), (12, 4, 1), (1, 12, 4)]:
        with pytest.raises(ValueError, match=re.escape("x must have shape (n, 4)")):
            model.fit(np.ones(shape, dtype=np.float32), y)


def test_bad_y_rank(model, xy):
    x, _ = xy
    message = re.escape("y must have shape (n,) (labels) or (n, 3) (targets)")
    with pytest.raises(ValueError, match=message):
        model.fit(x, np.zeros((12, 3, 1)))


@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed"])
def test_non_contiguous_x_gives_the_contiguous_result(dense, model, xy, layout):
    x, y = xy
    big = np.zeros((24, 8), dtype=np.float32)
    if layout == "strided":
        big[::2, ::2] = x
        view = big[::2, ::2]
    elif layout == "fortran":
        view = np.asfortranarray(x)
    else:
        view = x[::-1].copy()[::-1]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(view, x)
    np.testing.assert_array_equal(model.forward(view), model.forward(x))
    np.testing.assert_array_equal(model.predict(view), model.predict(x))
    np.testing.assert_array_equal(dense.forward(np.ascontiguousarray(x[:, :3])),
                                  dense.forward(x[:, :3]))
    np.testing.assert_array_equal(numrec.Sigmoid().forward(view), numrec.Sigmoid().forward(x))

    a = numrec.Sequential([numrec.Dense(4, 3, seed=0), numrec.Sigmoid()])
    b = numrec.Sequential([numrec.Dense(4, 3, seed=0), numrec.Sigmoid()])
    a.fit(view, y, epochs=1, batch_size=4, seed=0)
    b.fit(x, y, epochs=1, batch_size=4, seed=0)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)


def test_non_contiguous_gradient_into_dense(dense):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    dense.forward(x)
    g = np.arange(8, dtype=np.float32).reshape(2, 4)[:, ::2]
    gx = dense.backward(g)
    np.testing.assert_allclose(gx, np.ascontiguousarray(g) @ dense.weights, rtol=1e-6)
    np.testing.assert_allclose(dense.grad_weights, g.T @ x, rtol=1e-6)
