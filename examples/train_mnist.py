"""Train the reference digit network on MNIST, save it, load it back and use it.

The network of *number_recognition*, built layer by layer: 784 inputs (28 x 28 pixels),
256 hidden units with a leaky ReLU (alpha 0.2), 10 outputs with a logistic sigmoid, He
initialisation, the quadratic cost and plain SGD.  Training stops after the first epoch
whose test accuracy exceeds 96 %.

    python examples/train_mnist.py
    python examples/train_mnist.py --epochs 1 --train-samples 10000 --output /tmp/m.npz
"""
import argparse
import os
import sys
import time

import numpy as np

import numrec
from numrec.datasets import load_mnist


def build_network(seed: int) -> numrec.Sequential:
    """784 -> 256 -> 10 with LeakyReLU(0.2) and Sigmoid, He-initialised from ``seed``."""
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Dense(784, 256, seed=rng),   # weights (256, 784), bias (256,)
        numrec.LeakyReLU(alpha=0.2),
        numrec.Dense(256, 10, seed=rng),    # weights (10, 256), bias (10,)
        numrec.Sigmoid(),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20,
                        help="most epochs to run (default 20; it usually needs 2 or 3)")
    parser.add_argument("--target", type=float, default=0.96,
                        help="stop once test accuracy exceeds this (default 0.96)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N training images only (quick runs)")
    parser.add_argument("--output", default="mnist_model.npz",
                        help="where to save the model (default ./mnist_model.npz)")
    args = parser.parse_args(argv)
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory) or os.path.isdir(args.output):
        # Say so before training, not after: the trained model would be lost.
        problem = "a directory" if os.path.isdir(args.output) else f"no such directory {directory}"
        parser.error(f"--output: cannot save to {args.output} ({problem})")

    (x_train, y_train), (x_test, y_test) = load_mnist()
    if args.train_samples is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    print(f"MNIST: {len(x_train)} training and {len(x_test)} test images")

    model = build_network(args.seed)
    print(model)

    def report(epoch: int, history: numrec.History) -> None:
        print(f"epoch {epoch:2d}  loss {history.loss[-1]:.4f}  "
              f"test accuracy {100 * history.val_accuracy[-1]:.2f} %  "
              f"{history.seconds[-1]:.1f} s", flush=True)

    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        loss=numrec.MSE(), optimizer=numrec.SGD(lr=args.lr),
        validation_data=(x_test, y_test), target_accuracy=args.target,
        seed=args.seed, on_epoch=report,
    )
    seconds = time.perf_counter() - start
    accuracy = history.val_accuracy[-1]
    outcome = "reached" if history.reached_target else "did not reach"
    print(f"{outcome} {100 * args.target:.1f} % after {history.epochs} epochs "
          f"({seconds:.1f} s, compiled loop: {history.fused}): "
          f"test accuracy {100 * accuracy:.2f} %")

    model.save(args.output)
    print(f"saved the model to {args.output} ({os.path.getsize(args.output)} bytes)")

    reloaded = numrec.load(args.output)
    same = np.array_equal(reloaded.predict(x_test), model.predict(x_test))
    print(f"reloaded it: predictions identical to the trained model: {same}")

    digits = reloaded.predict_classes(x_test[:10])
    print("first ten test digits:", " ".join(map(str, y_test[:10])))
    print("reloaded model reads: ", " ".join(map(str, digits)))
    scores = reloaded.evaluate(x_test, y_test)
    print(f"reloaded model: test accuracy {100 * scores['accuracy']:.2f} %, "
          f"loss {scores['loss']:.4f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
