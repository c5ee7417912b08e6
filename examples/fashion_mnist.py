"""The reference network on Fashion-MNIST: clothes instead of digits, in the same format.

Fashion-MNIST has MNIST's shape (60000 + 10000 grey 28 x 28 images, 10 classes) and its
file names, so :func:`numrec.datasets.load_mnist` reads it from a directory.  On Debian
and Ubuntu ``apt-get install dataset-fashion-mnist`` puts it in
``/usr/share/datasets/fashion-mnist``, the default here.

    python examples/fashion_mnist.py
    python examples/fashion_mnist.py /path/to/fashion-mnist --epochs 2
"""
import argparse
import os
import sys
import time

import numpy as np

import numrec
from numrec.datasets import load_mnist

DEFAULT_DIRECTORY = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default=DEFAULT_DIRECTORY,
                        help=f"directory holding the four IDX files (default {DEFAULT_DIRECTORY})")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.2,
                        help="SGD learning rate (default 0.2; 0.5, right for digits, "
                             "can saturate the sigmoid outputs on clothes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N training images only (quick runs)")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.directory):
        print(f"fashion_mnist.py: no Fashion-MNIST in {args.directory}: install it with "
              f"'apt-get install dataset-fashion-mnist' or pass the directory holding "
              f"its four IDX files", file=sys.stderr)
        return 2
    try:
        (x_train, y_train), (x_test, y_test) = load_mnist(args.directory)
    except (OSError, ValueError) as error:
        print(f"fashion_mnist.py: {error}", file=sys.stderr)
        return 2
    if args.train_samples is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    print(f"Fashion-MNIST from {args.directory}: {len(x_train)} training and "
          f"{len(x_test)} test images")

    model = numrec.mnist_mlp(seed=args.seed)
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=numrec.SGD(lr=args.lr), validation_data=(x_test, y_test), seed=args.seed,
        on_epoch=lambda epoch, h: print(
            f"epoch {epoch:2d}  loss {h.loss[-1]:.4f}  "
            f"test accuracy {100 * h.val_accuracy[-1]:.2f} %", flush=True),
    )
    seconds = time.perf_counter() - start

    predicted = model.predict_classes(x_test)
    print("test accuracy per class:")
    for label, name in enumerate(CLASSES):
        mask = y_test == label
        print(f"  {label} {name:12} {100 * np.mean(predicted[mask] == label):6.2f} %")
    print(f"test accuracy {100 * history.val_accuracy[-1]:.2f} % after {history.epochs} "
          f"epochs ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
