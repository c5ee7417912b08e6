"""Train the reference network on MNIST and draw pictures of it.

Writes into the output directory (default ``pictures``):

- ``history.png``: the training loss and the test accuracy per epoch;
- ``confusion_matrix.png``: which digits are taken for which;
- ``misclassified.png``: test digits the network got wrong, with true and predicted labels;
- ``first_layer_weights.png``: the 256 first-layer weight vectors as 28 x 28 images.

Needs matplotlib (``pip install matplotlib``).  The ``numrec`` command draws the same
pictures with ``numrec train --plot DIR`` or ``numrec evaluate MODEL --plot DIR``.

    python examples/plot_training.py
    python examples/plot_training.py --epochs 1 --train-samples 5000 --output-dir /tmp/p
"""
import argparse
import sys

import numrec
from numrec import plotting
from numrec.datasets import load_mnist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="pictures",
                        help="directory for the PNG files (default ./pictures)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N training images only (quick runs)")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist()
    if args.train_samples is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]

    model = numrec.mnist_mlp(seed=args.seed)
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=numrec.SGD(lr=args.lr), validation_data=(x_test, y_test), seed=args.seed,
        on_epoch=lambda epoch, h: print(
            f"epoch {epoch:2d}  loss {h.loss[-1]:.4f}  "
            f"test accuracy {100 * h.val_accuracy[-1]:.2f} %", flush=True),
    )
    try:
        paths = plotting.write_all(args.output_dir, model, x_test, y_test, history)
    except ImportError as error:
        print(f"plot_training.py: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
