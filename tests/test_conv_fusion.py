"""Conv2D + ReLU + MaxPool2D as one stage of the compiled loop (``_conv.fuse_stages``).

The fused stage must give the same bits as the three stages apart (float32 and float64,
one and two threads, overlapping and uneven windows, padding and strides), only fuse
what it computes alike, and train as PyTorch does in float64.
"""
import numpy as np
import pytest

import numrec
from numrec._core import _training
from numrec._core._conv import _ConvReLUPool, fuse_stages


def conv_net(dtype, seed=0, pool=(2, None), conv2=(5, 1, 0)):
    """conv(1→6, 5x5) ReLU pool, conv(6→8, conv2 = (kernel, stride, padding)) ReLU
    pool, Flatten, on 16x16 images: both conv stages fuse, and the second passes dL/dx
    down."""
    rng = np.random.default_rng(seed)
    kernel, stride, padding = conv2
    return numrec.Sequential([
        numrec.Conv2D(1, 6, 5, seed=rng, dtype=dtype), numrec.ReLU(),
        numrec.MaxPool2D(*pool),
        numrec.Conv2D(6, 8, kernel, stride, padding, seed=rng, dtype=dtype), numrec.ReLU(),
        numrec.MaxPool2D(*pool), numrec.Flatten(),
    ], loss=numrec.SoftmaxCrossEntropy(), input_shape=(1, 16, 16))


def with_head(model, dtype, seed=0):
    """``model``'s components and a Dense 10 on their output."""
    width = int(np.prod(model.output_shape))
    head = numrec.Dense(width, 10, seed=np.random.default_rng(seed + 1), dtype=dtype)
    return numrec.Sequential(model.components + [head], loss=model.loss,
                             input_shape=model.input_shape)


def data(n=90, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 16, 16))
    x[x < 0.4] = 0  # some windows all zero: ReLU's derivative and ties at zero
    return x, rng.integers(0, 10, n)


def fit(dtype, threads, fused, optimizer, **shape):
    previous = _training._stage_fusion(fused)
    try:
        model = with_head(conv_net(dtype, **shape), dtype)
        x, y = data()
        history = model.fit(x.astype(dtype), y, epochs=2, batch_size=32, seed=5,
                            threads=threads, optimizer=optimizer(), fused=True)
        outputs = model.predict(x[:40].astype(dtype))
    finally:
        _training._stage_fusion(previous)
    return [p.copy() for p in model.parameters()], history.loss, outputs


SHAPES = {
    "2x2 pools": {},
    "overlapping 3x3 windows, stride 2": {"pool": (3, 2), "conv2": (3, 1, 1)},
    "padding and stride": {"conv2": (3, 2, 2)},
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_stage_gives_the_bits_of_the_three_stages(dtype, threads, shape):
    for optimizer in (lambda: numrec.Adam(0.01), lambda: numrec.SGD(0.1, momentum=0.9)):
        fused = fit(dtype, threads, True, optimizer, **shape)
        apart = fit(dtype, threads, False, optimizer, **shape)
        assert all(np.array_equal(a, b) for a, b in zip(fused[0], apart[0]))
        assert fused[1] == apart[1]
        assert np.array_equal(fused[2], apart[2])
        assert fused[1][1] != fused[1][0]  # it trained


def test_fit_and_predict_run_the_fused_stages(monkeypatch):
    """The trainers of fit and of predict both fuse the two conv stages (a spy on
    fuse_stages); with fusion off they do not."""
    made = []

    def spy(stages):
        fused = fuse_stages(stages)
        made.append(sum(isinstance(layer, _ConvReLUPool) for layer, _ in fused))
        return fused

    monkeypatch.setattr(_training, "fuse_stages", spy)
    model = with_head(conv_net(np.float32), np.float32)
    x, y = data()
    model.fit(x.astype(np.float32), y, epochs=1, batch_size=32, fused=True)
    model.predict(x.astype(np.float32))
    assert made and all(count == 2 for count in made)
    made.clear()
    previous = _training._stage_fusion(False)
    try:
        model.fit(x.astype(np.float32), y, epochs=1, batch_size=32, fused=True)
    finally:
        _training._stage_fusion(previous)
    assert made == []


def stages_of(*components, shape=(1, 12, 12)):
    model = numrec.Sequential(list(components), input_shape=shape)
    return _training.plan_stages(model.components, np.float64)


def test_only_conv_relu_then_max_pool_is_fused():
    conv = lambda: numrec.Conv2D(1, 2, 3, dtype=np.float64)  # noqa: E731
    fused = fuse_stages(stages_of(conv(), numrec.ReLU(), numrec.MaxPool2D(2),
                                  conv_layer := numrec.Conv2D(2, 2, 3, dtype=np.float64),
                                  numrec.ReLU(), numrec.MaxPool2D(2)))
    assert [type(layer) for layer, _ in fused] == [_ConvReLUPool, _ConvReLUPool]
    assert fused[1][0].parameters()[0] is conv_layer.parameters()[0]
    assert fused[1][0].in_features == 2 * 5 * 5 and fused[1][0].out_features == 2 * 1 * 1
    not_fused = [
        (conv(), numrec.LeakyReLU(0.1), numrec.MaxPool2D(2)),   # another activation
        (conv(), numrec.ReLU(), numrec.Flatten()),              # no pooling after
        (conv(), numrec.MaxPool2D(2), numrec.ReLU()),           # the other order
        (conv(), numrec.ReLU(), numrec.MaxPool2D(2), numrec.Sigmoid()),  # pool activated
    ]
    for components in not_fused:
        stages = stages_of(*components)
        assert not any(isinstance(layer, _ConvReLUPool) for layer, _ in fuse_stages(stages))


def test_a_compiled_subclass_is_not_fused():
    class Conv(numrec.Conv2D):
        """A Python subclass: not compiled, so neither planned nor fused."""

    stages = [(Conv(1, 2, 3, dtype=np.float64), numrec.ReLU()), (numrec.MaxPool2D(2), None)]
    stages[0][0].build((1, 12, 12))
    stages[1][0].build((2, 10, 10))
    assert [type(layer) for layer, _ in fuse_stages(stages)] == [Conv, numrec.MaxPool2D]


def test_a_pool_of_another_shape_or_bad_buffers_are_refused():
    conv, pool = numrec.Conv2D(1, 2, 3, dtype=np.float64), numrec.MaxPool2D(2)
    conv.build((1, 6, 6))
    pool.build(conv.output_shape)
    stage = _ConvReLUPool(conv, pool)
    with pytest.raises(ValueError, match="does not take the output"):
        _ConvReLUPool(conv, numrec.MaxPool2D(2))
    with pytest.raises(ValueError, match="rows, out_features"):
        stage._bind(np.zeros((4, 9)), np.zeros((4, 9)))
    with pytest.raises(ValueError, match="rows, out_features"):
        stage._bind(np.zeros((4, 8)), np.zeros((5, 8)))
    stage._bind(np.zeros((4, 8)), np.zeros((4, 8)))


def test_a_cnn_trains_as_pytorch_in_float64():
    """Two epochs of the fused compiled loop against PyTorch from the same weights on
    the same batches: relative error below 1e-9."""
    torch = pytest.importorskip("torch", reason="the parity test compares with PyTorch")
    model = with_head(conv_net(np.float64), np.float64)
    x, y = data(96)
    convs = [c for c in model.components if isinstance(c, numrec.Conv2D)]
    dense = model.components[-1]
    twin = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(dense.in_features, 10)).double()
    with torch.no_grad():
        for mine, theirs in zip(convs + [dense], [twin[0], twin[3], twin[7]]):
            theirs.weight.copy_(torch.from_numpy(mine.weights.reshape(theirs.weight.shape)))
            theirs.bias.copy_(torch.from_numpy(mine.bias))
    optimizer = torch.optim.Adam(twin.parameters(), lr=0.01)
    loss = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(11)
    orders = [rng.permutation(len(x)) for _ in range(2)]
    for order in orders:
        for start in range(0, len(x), 32):
            rows = torch.from_numpy(order[start:start + 32])
            optimizer.zero_grad()
            loss(twin(torch.from_numpy(x)[rows]), torch.from_numpy(y)[rows]).backward()
            optimizer.step()
    mine = numrec.Adam(0.01)
    for order in orders:
        model.fit(x[order], y[order], epochs=1, batch_size=32, shuffle=False, threads=2,
                  optimizer=mine, fused=True)
    for ours, theirs in zip(convs + [dense], [twin[0], twin[3], twin[7]]):
        expected = theirs.weight.detach().numpy().reshape(ours.weights.shape)
        np.testing.assert_allclose(ours.weights, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.bias, theirs.bias.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
