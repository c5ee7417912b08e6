"""Pictures of training and of a model (needs matplotlib: ``pip install matplotlib``).

Every function writes one PNG file and returns its path.  The figures are drawn with
matplotlib's object-oriented API on the non-interactive Agg canvas: no window opens, and
the pyplot state (and backend) of the calling program is left alone.

>>> from numrec import plotting                                     # doctest: +SKIP
>>> plotting.write_all("pictures", model, x_test, y_test, history)  # doctest: +SKIP
['pictures/history.png', 'pictures/confusion_matrix.png', ...]
"""
import math
import os

import numpy as np

__all__ = [
    "confusion_matrix", "plot_confusion_matrix", "plot_first_layer_weights",
    "plot_history", "plot_misclassified", "write_all",
]

#: File names written by :func:`write_all`.
HISTORY_PNG = "history.png"
CONFUSION_PNG = "confusion_matrix.png"
MISCLASSIFIED_PNG = "misclassified.png"
WEIGHTS_PNG = "first_layer_weights.png"


def _figure(width, height, layout="constrained"):
    """Return a new matplotlib ``Figure`` drawn by the Agg canvas."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "numrec.plotting needs matplotlib: install it with: pip install matplotlib"
        ) from None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    del matplotlib
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def confusion_matrix(true, predicted, n_classes=10):
    """Count how often each true class was predicted as each class.

    Parameters
    ----------
    true, predicted : array_like of int, shape (n_samples,)
        Class labels in ``0 .. n_classes - 1``.
    n_classes : int, default 10

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
        ``confusion[i, j]`` is the number of samples of class ``i`` predicted as ``j``;
        the diagonal holds the correct predictions.

    Examples
    --------
    >>> from numrec.plotting import confusion_matrix
    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], n_classes=3)
    array([[1, 0, 0],
           [0, 1, 1],
           [0, 0, 1]])
    """
    true = np.asarray(true)
    predicted = np.asarray(predicted)
    if true.ndim != 1 or predicted.shape != true.shape:
        raise ValueError(
            f"true and predicted must be 1-D arrays of the same length, "
            f"got shapes {true.shape} and {predicted.shape}"
        )
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    for name, labels in (("true", true), ("predicted", predicted)):
        if labels.size and labels.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer labels, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{name} must hold labels in 0..{n_classes - 1}")
    index = true.astype(np.int64) * n_classes + predicted.astype(np.int64)
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def plot_history(history, path):
    """Plot the training loss and the validation accuracy per epoch.

    Parameters
    ----------
    history : History or mapping
        What :meth:`numrec.Sequential.fit` returned (or a dict with the keys ``loss``
        and, optionally, ``val_accuracy``).
    path : str or path-like
        The PNG file to write.

    Returns
    -------
    str
        ``path``.
    """
    loss = list(_field(history, "loss"))
    accuracy = list(_field(history, "val_accuracy", ()))
    if not loss:
        raise ValueError("history holds no epochs")
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(loss) + 1)
    ax_loss.plot(epochs, loss, "o-", color="tab:blue")
    ax_loss.set_title("Training loss per epoch")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("mean loss")
    ax_loss.grid(alpha=0.3)
    if accuracy:
        percent = 100 * np.asarray(accuracy, dtype=float)
        ax_acc.plot(np.arange(1, len(percent) + 1), percent, "o-", color="tab:green")
        ax_acc.axhline(96, color="grey", linestyle="--", linewidth=1, label="96 %")
        ax_acc.annotate(f"{percent[-1]:.2f} %", (len(percent), percent[-1]),
                        textcoords="offset points", xytext=(-8, -4), ha="right", va="top")
        ax_acc.legend(loc="lower right")
    else:
        ax_acc.text(0.5, 0.5, "no validation data", ha="center", va="center",
                    transform=ax_acc.transAxes)
    ax_acc.set_title("Test accuracy per epoch")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def _field(history, name, default=None):
    if isinstance(history, dict):
        value = history.get(name, default)
    else:
        value = getattr(history, name, default)
    if value is None:
        raise TypeError(f"history has no {name!r}")
    return value


def plot_confusion_matrix(confusion, path):
    """Draw a confusion matrix as a grid of counts, true classes down, predictions across.

    Parameters
    ----------
    confusion : array_like, shape (n_classes, n_classes)
        From :func:`confusion_matrix`.
    path : str or path-like
        The PNG file to write.

    Returns
    -------
    str
        ``path``.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or not confusion.size:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}")
    n = confusion.shape[0]
    total = confusion.sum()
    accuracy = np.trace(confusion) / total if total else 0.0
    fig = _figure(7, 6)
    ax = fig.subplots()
    # Colour by the share of each true class, so that rare classes are as readable.
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"Confusion matrix ({int(total)} samples, accuracy {100 * accuracy:.2f} %)")
    return _save(fig, path)


def _as_images(images):
    images = np.asarray(images)
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(
                f"images of {images.shape[1]} pixels are not square: pass them as "
                f"(n, height, width)"
            )
        images = images.reshape(len(images), side, side)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, pixels) or (n, height, width), "
                         f"got {images.shape}")
    return images


def plot_misclassified(images, true_labels, predicted_labels, path, max_images=36):
    """Show the test digits the model got wrong, with their true and predicted labels.

    Parameters
    ----------
    images : array_like, shape (n, 784) or (n, 28, 28)
        Images (uint8 pixels or floats in [0, 1]).
    true_labels, predicted_labels : array_like of int, shape (n,)
        Only the images where the two differ are drawn, in order.
    path : str or path-like
        The PNG file to write.
    max_images : int, default 36
        At most this many images, in a square-ish grid.

    Returns
    -------
    str
        ``path``.
    """
    images = _as_images(images)
    true_labels = np.asarray(true_labels)
    predicted_labels = np.asarray(predicted_labels)
    if not (len(images) == len(true_labels) == len(predicted_labels)):
        raise ValueError(
            f"images, true_labels and predicted_labels must have the same length, got "
            f"{len(images)}, {len(true_labels)} and {len(predicted_labels)}"
        )
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    wrong = np.flatnonzero(true_labels != predicted_labels)
    shown = wrong[:max_images]
    columns = max(1, math.ceil(math.sqrt(len(shown))))
    rows = max(1, math.ceil(len(shown) / columns))
    width, height = max(1.3 * columns, 4.5), 1.45 * rows + 0.9
    fig = _figure(width, height, layout=None)
    fig.suptitle(f"Misclassified: {len(wrong)} of {len(images)} images\n"
                 f"showing {len(shown)} (t = true label, p = predicted)")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.95 / height,
                        wspace=0.1, hspace=0.3)
    for ax in axes:
        ax.set_axis_off()
    if not len(shown):
        axes[0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[0].transAxes)
    vmax = 255 if images.dtype == np.uint8 else 1
    for ax, index in zip(axes, shown):
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"t {true_labels[index]}  p {predicted_labels[index]}", fontsize=10,
                     color="tab:red")
    return _save(fig, path)


def _colormap(name):
    from matplotlib import colormaps

    return colormaps[name]


def _first_dense(model):
    for component in getattr(model, "components", [model]):
        weights = getattr(component, "weights", None)
        if isinstance(weights, np.ndarray) and weights.ndim == 2:
            return component
    raise ValueError("the model has no layer with a 2-D weights array")


def plot_first_layer_weights(model, path):
    """Show each row of the first layer's weights as an image.

    For the reference network (784 → 256 → 10) this is 256 pictures of 28 × 28 in a
    16 × 16 grid: what each hidden unit looks for.  Red is a positive weight, blue a
    negative one; each picture is scaled to its own largest absolute weight.

    Parameters
    ----------
    model : Sequential or Dense
        Its first component with a 2-D ``weights`` array (``(units, pixels)``, pixels a
        square number) is drawn.
    path : str or path-like
        The PNG file to write.

    Returns
    -------
    str
        ``path``.
    """
    layer = _first_dense(model)
    weights = np.asarray(layer.weights, dtype=np.float64)
    units, pixels = weights.shape
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(
            f"the first layer has {pixels} inputs: not a square image, cannot draw it"
        )
    columns = math.ceil(math.sqrt(units))
    rows = math.ceil(units / columns)
    # One mosaic image (tiles separated by a blank pixel) drawn with a single imshow:
    # much faster than one axes per unit.  Each tile is scaled to [-1, 1].
    step = side + 1
    mosaic = np.full((rows * step - 1, columns * step - 1), np.nan)
    limits = np.abs(weights).max(axis=1)
    limits[limits == 0] = 1.0
    for unit, row in enumerate(weights / limits[:, None]):
        top, left = (unit // columns) * step, (unit % columns) * step
        mosaic[top:top + side, left:left + side] = row.reshape(side, side)
    size = min(10.0, max(4.0, 0.6 * columns))
    fig = _figure(size, size * rows / columns + 0.5)
    ax = fig.subplots()
    cmap = _colormap("RdBu_r").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"First-layer weights: {units} units, each shown as {side} × {side}\n"
                 f"(red positive, blue negative, each scaled to its largest weight)")
    return _save(fig, path)


def write_all(directory, model, x_test, y_test, history=None):
    """Write every picture for ``model`` into ``directory`` (created if needed).

    Parameters
    ----------
    directory : str or path-like
    model : Sequential
        A trained model.
    x_test : ndarray, shape (n, 784)
        Test images (uint8 pixels or floats).
    y_test : ndarray of int, shape (n,)
        Their labels.
    history : History, optional
        From :meth:`~numrec.Sequential.fit`; without it the history plot is skipped.

    Returns
    -------
    list of str
        The files written: ``history.png`` (with a history), ``confusion_matrix.png``,
        ``misclassified.png`` and ``first_layer_weights.png``.
    """
    _figure(1, 1)  # fail early, before any work, if matplotlib is missing
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    y_test = np.asarray(y_test)
    predicted = model.predict_classes(x_test)
    n_classes = max(int(model.predict(x_test[:1]).shape[1]), int(y_test.max()) + 1)
    paths = []
    if history is not None:
        paths.append(plot_history(history, os.path.join(directory, HISTORY_PNG)))
    paths.append(plot_confusion_matrix(
        confusion_matrix(y_test, predicted, n_classes), os.path.join(directory, CONFUSION_PNG)
    ))
    paths.append(plot_misclassified(x_test, y_test, predicted,
                                    os.path.join(directory, MISCLASSIFIED_PNG)))
    paths.append(plot_first_layer_weights(model, os.path.join(directory, WEIGHTS_PNG)))
    return paths
