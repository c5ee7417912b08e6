"""Train a convolutional network on MNIST to over 99 % test accuracy, save it and load it.

On images of shape (1, 28, 28) (channels, height, width, as PyTorch): conv(1→16, 5x5)
ReLU, max-pool 2, conv(16→32, 5x5) ReLU, max-pool 2, flatten, dense 10, trained with
softmax cross-entropy and Adam (learning rate 0.001, batch 64).  Training stops after the
first epoch whose test accuracy exceeds 99 %.  ``--keras`` trains the Keras MNIST
example's network instead: two 3x3 convolutions (32 and 64 channels) with ReLU, a 2x2
max-pool, dropout 0.25, flatten, a dense layer of 128 with ReLU, dropout 0.5 and 10
outputs; it has 65 times the parameters and 10 times the arithmetic per image.

    python examples/mnist_cnn.py
    python examples/mnist_cnn.py --keras
    python examples/mnist_cnn.py --epochs 1 --train-samples 2000 --output /tmp/cnn.npz
"""
import argparse
import os
import time

import numpy as np

import numrec
from numrec.datasets import load_mnist


def keras_network(seed: int) -> numrec.Sequential:
    """The Keras MNIST example's network (1.2 million parameters)."""
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Conv2D(1, 32, 3, seed=rng, init="he"),    # (1, 28, 28) -> (32, 26, 26)
        numrec.ReLU(),
        numrec.Conv2D(32, 64, 3, seed=rng, init="he"),   # -> (64, 24, 24)
        numrec.ReLU(),
        numrec.MaxPool2D(2),                            # -> (64, 12, 12)
        numrec.Dropout(0.25, seed=seed),
        numrec.Flatten(),                               # -> (9216,)
        numrec.Dense(9216, 128, seed=rng),
        numrec.ReLU(),
        numrec.Dropout(0.5, seed=seed + 1),
        numrec.Dense(128, 10, seed=rng),                # logits
    ], loss=numrec.SoftmaxCrossEntropy(), input_shape=(1, 28, 28))


def small_network(seed: int) -> numrec.Sequential:
    """The default network (18 378 parameters, 2.1 million multiply-adds per image)."""
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Conv2D(1, 16, 5, seed=rng, init="he"),    # -> (16, 24, 24)
        numrec.ReLU(),
        numrec.MaxPool2D(2),                            # -> (16, 12, 12)
        numrec.Conv2D(16, 32, 5, seed=rng, init="he"),   # -> (32, 8, 8)
        numrec.ReLU(),
        numrec.MaxPool2D(2),                            # -> (32, 4, 4)
        numrec.Flatten(),                               # -> (512,)
        numrec.Dense(512, 10, seed=rng),
    ], loss=numrec.SoftmaxCrossEntropy(), input_shape=(1, 28, 28))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras", action="store_true",
                        help="train the Keras example's larger network")
    parser.add_argument("--epochs", type=int, default=10, help="most epochs (default 10)")
    parser.add_argument("--target", type=float, default=0.99,
                        help="stop once test accuracy exceeds this (default 0.99)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.001, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N training images only (quick runs)")
    parser.add_argument("--test-samples", type=int, default=None,
                        help="test on the first N test images only (quick runs)")
    parser.add_argument("--output", default="mnist_cnn.npz",
                        help="where to save the model (default ./mnist_cnn.npz)")
    args = parser.parse_args(argv)
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory) or os.path.isdir(args.output):
        problem = "a directory" if os.path.isdir(args.output) else f"no such directory {directory}"
        parser.error(f"--output: cannot save to {args.output} ({problem})")

    # uint8 pixels, (n, 784); the model reads them as (n, 1, 28, 28) images scaled by 1/255.
    (x_train, y_train), (x_test, y_test) = load_mnist(dtype=np.uint8)
    x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)
    x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    print(f"MNIST: {len(x_train)} training and {len(x_test)} test images")

    model = keras_network(args.seed) if args.keras else small_network(args.seed)
    model.summary()

    def report(epoch: int, history: numrec.History) -> None:
        print(f"epoch {epoch:2d}  loss {history.loss[-1]:.4f}  "
              f"test accuracy {100 * history.val_accuracy[-1]:.2f} %  "
              f"{history.seconds[-1]:.1f} s", flush=True)

    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=numrec.Adam(lr=args.lr), validation_data=(x_test, y_test),
        target_accuracy=args.target, seed=args.seed, on_epoch=report,
    )
    seconds = time.perf_counter() - start
    outcome = "reached" if history.reached_target else "did not reach"
    print(f"{outcome} {100 * args.target:.1f} % after {history.epochs} epochs "
          f"({seconds:.1f} s, {history.loop} loop): "
          f"test accuracy {100 * history.val_accuracy[-1]:.2f} %")

    model.save(args.output)
    print(f"saved the model to {args.output}")
    loaded = numrec.load(args.output)
    same = bool(np.array_equal(loaded.predict(x_test[:100]), model.predict(x_test[:100])))
    print(f"predictions identical to the trained model: {same}")
    digits = " ".join(map(str, loaded.predict_classes(x_test[:10])))
    print(f"first ten test digits: {digits} (true: {' '.join(map(str, y_test[:10]))})")
    return 0 if history.reached_target or args.train_samples else 1


if __name__ == "__main__":
    raise SystemExit(main())
