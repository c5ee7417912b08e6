"""The ``numrec`` command: train, evaluate and use digit networks from the shell.

``numrec train`` trains the reference network (784 → 256 → 10, LeakyReLU 0.2, Sigmoid,
quadratic cost, plain SGD, He initialisation) on MNIST until the test accuracy exceeds
96 %, and saves it; ``numrec evaluate`` reports a saved model's test accuracy and
confusion matrix; ``numrec predict`` classifies pictures of digits.  Models are numrec's
``.npz`` files or the seed's text files (:mod:`numrec.seed_format`); a ``.txt`` output
path saves in the seed's format.

User mistakes (a bad path, a bad option value, malformed data, a broken model file, an
unreadable picture) end with one line on stderr and a non-zero exit status: 2 for a
command-line usage error, 1 otherwise.
"""
import argparse
import json
import math
import os
import signal
import sys
import warnings
import zlib

import numpy as np

#: ``numrec train`` defaults.  The learning rate and batch size give the fastest reliable
#: time to 96 % test accuracy measured for this network (see the documentation).
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 0.75
DEFAULT_HIDDEN = (256,)
DEFAULT_SEED = 0
#: Train until the test accuracy exceeds this many percent ...
DEFAULT_TARGET_PERCENT = 96.0
#: Presets whose default target is another one.
PRESET_TARGET_PERCENT = {"cnn": 99.0, "cnn-keras": 99.0}
#: ... but for at most this many epochs.
MAX_EPOCHS = 50
#: Where ``numrec train`` saves the model unless given ``--output``.
DEFAULT_OUTPUT = "numrec-mnist.npz"
#: Leaky ReLU slope of the reference network.
ALPHA = 0.2
#: Output activations a seed text model can be read with (its file does not record one).
SEED_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Exit status after SIGTERM (128 + 15): a scheduler's or ``timeout``'s stop.
EXIT_TERMINATED = 143

N_CLASSES = 10
N_PIXELS = 784


class CommandError(Exception):
    """A user mistake, reported as ``numrec: error: <message>`` with exit status 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops training as Ctrl-C does."""


def _raise_terminated(signum, frame):
    raise Terminated()


class UsageError(CommandError):
    """Options that do not fit together: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are a single line on stderr."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} "
                     f"(see '{self.prog} --help')\n")


# --- option values -------------------------------------------------------------------------

def _int_at_least(minimum, wording, maximum=2**31 - 1):
    """An argparse type: a whole number from ``minimum`` (described by ``wording``) to
    ``maximum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "at least 1")
_non_negative_int = _int_at_least(0, "0 or more", maximum=None)  # seeds: any size
#: Threads: more than any machine has is a typing mistake.
_thread_count = _int_at_least(1, "at least 1", maximum=1024)
#: Layer widths: a million units already make gigabytes of weights.
_layer_width = _int_at_least(1, "at least 1", maximum=1_000_000)


def _number_where(accept, wording):
    """An argparse type: a finite number for which ``accept(value)``, else ``wording``."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text}")
        return value

    return parse


_positive_float = _number_where(lambda v: v > 0, "a positive number")
_non_negative_float = _number_where(lambda v: v >= 0, "0 or more")
_fraction_below_one = _number_where(lambda v: 0 <= v < 1, "at least 0 and below 1")


def _port(text):
    """Read a TCP port number, 0 to 65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def _accuracy_percent(text):
    """Read a target accuracy: a percentage such as ``96``, or a fraction such as ``0.96``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a percentage such as 96 or a fraction such as 0.96, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0 or value >= 100:
        raise argparse.ArgumentTypeError(
            f"must be a percentage between 0 and 100 (or a fraction below 1), got {text}"
        )
    return value * 100 if value < 1 else value


# --- the parser ----------------------------------------------------------------------------

_MAIN_EPILOG = """\
examples:
  numrec train                       train the reference network to 96 % and save it
  numrec evaluate numrec-mnist.npz   test accuracy and confusion matrix
  numrec predict numrec-mnist.npz my-digit.png

Run 'numrec COMMAND --help' for a command's options.
"""

_TRAIN_EPILOG = f"""\
presets (--preset; the other options change one setting each):
  reference     784-256-10, leaky ReLU (slope {ALPHA}), sigmoid outputs, quadratic cost
                (mse), plain SGD with learning rate {DEFAULT_LR:g}, batch {DEFAULT_BATCH_SIZE},
                He initialisation
  seed-rust     784-256-10, leaky ReLU, softmax outputs, categorical cross-entropy,
                SGD lr 0.8, batch 512, He initialisation
  seed-pytorch  784-256-10, ReLU, cross-entropy on the logits (PyTorch's
                CrossEntropyLoss), SGD lr 0.1, batch 512, no shuffling, He (Kaiming
                normal) weights and zero biases
  cnn           a convolutional network on the 1 x 28 x 28 images: conv 16 5x5, max-pool
                2, conv 32 5x5, max-pool 2, flatten, dense 10, ReLU, cross-entropy on
                the logits, Adam lr 0.001, batch 64, to 99 % by default
  cnn-keras     the Keras MNIST example's network: conv 32 3x3, conv 64 3x3, max-pool 2,
                dropout 0.25, flatten, dense 128, dropout 0.5, dense 10; Adam, batch 128
                (--hidden changes the dense part of both)

The losses expect their outputs: mse any, cross-entropy softmax, binary-cross-entropy
sigmoid, softmax-cross-entropy the logits (--output-activation identity).

Without --epochs, training stops after the first epoch whose test accuracy exceeds the
target (checked after every epoch), or after {MAX_EPOCHS} epochs; in that case the model is
saved and the exit status is 1.  With --epochs alone, exactly that many epochs run; with
--epochs and --target-accuracy, at most that many.  A network that does not learn (test
accuracy at chance level) is saved too, with a warning, and the exit status is 1.

Each epoch prints its mean training loss, test accuracy and seconds (training plus the
test pass); a live bar is drawn when the output is a terminal.  Ctrl-C saves the model
trained so far and exits with status 130; SIGTERM (a scheduler's stop, or timeout's)
does the same with status 143.  A second Ctrl-C or SIGTERM during that save stops at
once without saving (a file already at the output path stays as it was).  The output
must be a regular file or a link to one: a device or a pipe is never replaced.

--json ends the output with one JSON object: epochs, test_accuracy (a fraction),
train_seconds (training plus per-epoch evaluation, without start-up and data loading),
model (the saved path), reached_target, loss, val_accuracy and epoch_seconds (per epoch),
and the settings used.

examples:
  numrec train                              to 96 %, saved as {DEFAULT_OUTPUT}
  numrec train --epochs 10 --output ten.npz
  numrec train --output seed-model.txt      in the seed's text format
  numrec train --target-accuracy 97.5 --hidden 512 128 --lr 0.3
  numrec train --preset seed-pytorch
  numrec train --preset cnn --target-accuracy 99
  numrec train --hidden 512 256 --activation relu --output-activation identity \\
      --loss softmax-cross-entropy --optimizer adam --lr 0.001 --batch-size 128
  numrec train --data /usr/share/datasets/fashion-mnist --epochs 20 --target-accuracy 85
  numrec train --json --quiet | tail -n 1
"""

_EVALUATE_EPILOG = """\
Prints the accuracy on the test set and a 10 x 10 confusion matrix: rows are the true
digits, columns the predicted ones, the last column each digit's recall.  --json prints
the same as one JSON object (accuracy as a fraction).

A model saved by 'numrec train' remembers its data (the bundled MNIST, or the --data
directory, e.g. Fashion-MNIST): without --data it is evaluated on that data's test set,
which the first line names.  Data whose images differ in size from the model's is refused.

MODEL is a .npz file saved by numrec, or a text file in the seed's format (first line
[layers]), whose output activation --output-activation gives (default: softmax).

examples:
  numrec evaluate numrec-mnist.npz
  numrec evaluate model.npz --data ~/data/mnist --json
  numrec evaluate model.npz --plot pictures/
  numrec evaluate seed-model.txt --output-activation sigmoid
"""

_PREDICT_EPILOG = """\
Any picture Pillow reads (PNG, BMP, PGM, JPEG, ...), of any size, in colour or grey, with
a dark digit on a light background or a light digit on a dark one.  Each picture is
brought to MNIST's form: grey, inverted if its background is light, cropped to the
digit, scaled to fit 20 x 20 keeping the aspect ratio, and centred by centre of mass in
28 x 28.  The probabilities are the network's softmax outputs (or the softmax of its
logits, for a model trained with softmax cross-entropy); other outputs (sigmoids) are
divided by their sum.

MODEL is a .npz file saved by numrec, or a text file in the seed's format (first line
[layers]), whose output activation --output-activation gives (default: softmax).

examples:
  numrec predict numrec-mnist.npz seven.png
  numrec predict model.npz scans/*.png --json
  numrec predict seed-model.txt seven.png --output-activation sigmoid
"""

_SERVE_EPILOG = """\
The page shows the digit the model sees in large type, a bar for each of the ten
classes and the 28 x 28 image the network was given (centred as 'numrec predict' does).
The same answers come from POST /predict, with a PNG body or JSON
{"pixels": [28 rows of 28 values 0-255]}; GET /health answers 200 once the model is
loaded.  Request bodies are limited to 2 MB and kept in memory only.

By default the server listens on 127.0.0.1, which only this machine can reach.
--host 0.0.0.0 (or any other address) opens it to every machine that can reach this
one, with no password and no encryption: use it only on a network you trust.
Ctrl-C stops the server.

examples:
  numrec serve                          the cached default model, http://127.0.0.1:8000/
  numrec serve numrec-mnist.npz --port 0
  curl --data-binary @seven.png http://127.0.0.1:8000/predict
"""


def build_parser():
    """Return the ``numrec`` argument parser."""
    from numrec import __version__

    parser = _Parser(
        prog="numrec",
        description="Train, evaluate and use small digit-recognising networks.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"numrec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train the reference network on MNIST and save it",
        description="Train a digit network (by default the reference one) on MNIST and save it.",
        epilog=_TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data", metavar="DIR",
                       help="directory with the four MNIST-format IDX files, gzipped or not "
                            "(default: $NUMREC_DATA, else the copy bundled with numrec)")
    train.add_argument("--epochs", type=_positive_int, metavar="N",
                       help="train for exactly N epochs (no accuracy target unless "
                            "--target-accuracy is given too)")
    train.add_argument("--target-accuracy", type=_accuracy_percent, metavar="PERCENT",
                       help="stop once test accuracy exceeds this, as a percentage (96) or "
                            f"a fraction (0.96) (default: {DEFAULT_TARGET_PERCENT:g}; "
                            f"{PRESET_TARGET_PERCENT['cnn']:g} for the cnn presets)")
    _add_network_options(train)
    train.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED, metavar="N",
                       help="seed for the initial weights and the shuffling; the same seed "
                            f"gives the same model (default: {DEFAULT_SEED})")
    train.add_argument("--threads", type=_thread_count, default=None, metavar="N",
                       help="threads of the compiled training loop (default: the cores "
                            "this process may use); 1 is kinder to a busy machine")
    train.add_argument("--output", "-o", metavar="PATH", default=DEFAULT_OUTPUT,
                       help=f"where to save the model (default: {DEFAULT_OUTPUT}); a "
                            f"path ending in .txt is written in the seed's text format")
    train.add_argument("--json", action="store_true",
                       help="end with a JSON summary on one line")
    train.add_argument("--quiet", "-q", action="store_true",
                       help="print only the summary (with --json: only the JSON)")
    train.add_argument("--plot", metavar="DIR",
                       help="also draw pictures of the training and the model into DIR "
                            "(needs matplotlib: pip install matplotlib)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate", help="test accuracy and confusion matrix of a saved model",
        description="Report a saved model's accuracy and confusion matrix on the test set.",
        epilog=_EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("model", metavar="MODEL",
                          help="a model file saved by numrec, or a seed text model")
    _add_output_activation(evaluate)
    evaluate.add_argument("--data", metavar="DIR",
                          help="directory with the MNIST-format IDX files (default: the "
                               "data the model was trained on, as its file records; for "
                               "older files $NUMREC_DATA, else the bundled copy)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--plot", metavar="DIR",
                          help="also draw pictures of the model into DIR "
                               "(needs matplotlib: pip install matplotlib)")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser(
        "predict", help="classify pictures of digits",
        description="Classify pictures of handwritten digits with a saved model.",
        epilog=_PREDICT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("model", metavar="MODEL",
                         help="a model file saved by numrec, or a seed text model")
    _add_output_activation(predict)
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="pictures of digits")
    predict.add_argument("--json", action="store_true",
                         help="print a JSON list, one object per picture")
    predict.set_defaults(run=_predict)

    serve = commands.add_parser(
        "serve", help="a local web page that recognises the digit you draw",
        description="Serve a web page on this machine where you draw a digit and a model "
                    "recognises it as you draw.",
        epilog=_SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("model", metavar="MODEL", nargs="?",
                       help="a model file saved by numrec (any model with 784 inputs and 10 "
                            "outputs), or a seed text model (default: the reference network "
                            "trained on the bundled MNIST on first use and cached in "
                            "$XDG_CACHE_HOME/numrec, else ~/.cache/numrec)")
    _add_output_activation(serve)
    serve.add_argument("--port", type=_port, default=8000, metavar="N",
                       help="TCP port to listen on; 0 picks a free one (default: 8000)")
    serve.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                       help="address to listen on (default: 127.0.0.1, this machine only). "
                            "Any other, such as 0.0.0.0, lets every machine that can reach "
                            "this one use the page and the model, with no password and no "
                            "encryption")
    serve.add_argument("--log", action="store_true",
                       help="print a line per request on stderr")
    serve.set_defaults(run=_serve)
    info = commands.add_parser(
        "info", help="versions, kernels, threads and BLAS (for bug reports)",
        description="Print numrec's version, Python's and NumPy's, which kernels run on "
                    "this processor (AVX-512, AVX2 + FMA or portable), the training threads and the "
                    "BLAS library in use.  Paste it into bug reports.",
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_info)

    export = commands.add_parser(
        "export", help="write a saved model as an ONNX file",
        description="Write a saved model as an ONNX file, for onnxruntime (Python, C++, "
                    "C#, Java, or a web page with onnxruntime-web).  Its output is what "
                    "numrec's predict gives: probabilities for a model trained with "
                    "softmax cross-entropy.  Needs the onnx package: pip install "
                    "'.[onnx]' in numrec's source folder.",
    )
    export.add_argument("model", metavar="MODEL",
                        help="a model file saved by numrec, or a seed text model")
    export.add_argument("output", metavar="OUTPUT", help="the ONNX file to write")
    _add_output_activation(export)
    export.set_defaults(run=_export)
    return parser


def _add_network_options(train):
    """The options that describe the network and its training, on top of a preset."""
    from numrec.presets import ACTIVATIONS, INITS, LOSSES, OPTIMIZERS, OUTPUT_ACTIVATIONS, PRESETS

    network = train.add_argument_group(
        "network and training (each option overrides the preset's setting)")
    network.add_argument("--preset", choices=list(PRESETS), default="reference",
                         help="the starting setup (default: reference; see below)")
    network.add_argument("--hidden", type=_layer_width, nargs="+", metavar="SIZE",
                         help="hidden layer widths, e.g. --hidden 512 128 "
                              f"(reference: {' '.join(map(str, DEFAULT_HIDDEN))})")
    network.add_argument("--activation", choices=list(ACTIVATIONS),
                         help="activation of the hidden layers (reference: leaky-relu)")
    network.add_argument("--alpha", type=_non_negative_float, metavar="SLOPE",
                         help=f"the leaky ReLU's slope for negative inputs (default: {ALPHA:g})")
    network.add_argument("--output-activation", choices=list(OUTPUT_ACTIVATIONS),
                         help="activation of the outputs; identity leaves the logits for "
                              "--loss softmax-cross-entropy (reference: sigmoid)")
    network.add_argument("--loss", dest="loss_name", choices=list(LOSSES),
                         help="the cost (reference: mse, the quadratic cost)")
    network.add_argument("--optimizer", dest="optimizer_name", choices=list(OPTIMIZERS),
                         help="the optimizer (reference: sgd)")
    network.add_argument("--lr", type=_positive_float, metavar="RATE",
                         help=f"learning rate (reference: {DEFAULT_LR:g})")
    network.add_argument("--momentum", type=_fraction_below_one, metavar="MU",
                         help="SGD momentum in [0, 1), PyTorch's convention (default: 0)")
    network.add_argument("--nesterov", action="store_true", default=None,
                         help="Nesterov momentum (SGD, with --momentum)")
    network.add_argument("--classic-momentum", dest="classic", action="store_true",
                         default=None,
                         help="the classical form v = mu v + lr g, w -= v (SGD, with "
                              "--momentum; the reference implementation's)")
    network.add_argument("--betas", type=_fraction_below_one, nargs=2, metavar=("B1", "B2"),
                         help="Adam's moment decay rates (default: 0.9 0.999)")
    network.add_argument("--weight-decay", type=_non_negative_float, metavar="LAMBDA",
                         help="L2 penalty (SGD, Adam) or decoupled decay (AdamW) "
                              "(default: 0; AdamW 0.01)")
    network.add_argument("--init", choices=list(INITS),
                         help="initial weights: he (normal), glorot (uniform), uniform "
                              "(-1 to 1), torch (nn.Linear's) (reference: he)")
    network.add_argument("--batch-size", type=_positive_int, metavar="N",
                         help=f"samples per step (reference: {DEFAULT_BATCH_SIZE})")
    network.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                         help="shuffle the training samples each epoch (reference: yes)")


#: ``numrec train`` options that change the preset's :class:`~numrec.presets.Setup`.
_SETUP_OPTIONS = ("hidden", "activation", "alpha", "output_activation", "loss_name",
                  "optimizer_name", "lr", "momentum", "nesterov", "classic", "betas",
                  "weight_decay", "init", "batch_size", "shuffle")


def _setup(args):
    """The preset with the options given on the command line, checked together."""
    from numrec.presets import PRESETS

    changes = {name: getattr(args, name) for name in _SETUP_OPTIONS
               if getattr(args, name) is not None}
    for name in ("hidden", "betas"):
        if name in changes:
            changes[name] = tuple(changes[name])
    try:
        setup = PRESETS[args.preset].replace(**changes)
        if "alpha" in changes and setup.activation != "leaky-relu":
            raise ValueError(f"--alpha is the leaky ReLU's slope, but the hidden activation "
                             f"is {setup.activation}")
        return setup
    except ValueError as exc:
        raise UsageError(f"numrec train: error: {exc}") from None


def _add_output_activation(command):
    command.add_argument("--output-activation", choices=SEED_OUTPUT_ACTIVATIONS,
                         help="for a model in the seed's text format, which records none: "
                              "the activation after its last layer (default: softmax)")


# --- entry point ---------------------------------------------------------------------------

def main(argv=None):
    """Run the ``numrec`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0 on success, 1 for an error, 2 for a usage error, 130
    after Ctrl-C, 143 after SIGTERM.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        print("numrec: error: choose a command: train, evaluate, predict, serve, export or info "
              "(see 'numrec --help')", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"{exc} (see 'numrec {args.command} --help')", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        _flush_quietly()
        terminated = isinstance(exc, Terminated)
        print(f"numrec: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``numrec ... | head``): nothing left to say.
        _silence_stdout()
        return 1
    except MemoryError:
        _flush_quietly()
        print("numrec: error: not enough memory for this network and data (try smaller "
              "--hidden widths or --batch-size)", file=sys.stderr)
        return 1
    except (CommandError, ValueError, TypeError, OSError, EOFError, zlib.error) as exc:
        _flush_quietly()
        print(f"numrec: error: {_describe(exc)}", file=sys.stderr)
        return 1


def _describe(exc):
    """One line naming the problem, for any error the command reports."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, (EOFError, zlib.error)):
        text = f"the data is truncated or corrupt ({exc})" if str(exc) else \
            "the data is truncated or corrupt"
    else:
        text = str(exc) or type(exc).__name__
    return _one_line(text)


def _one_line(text):
    return " ".join(str(text).split())


def _flush_quietly():
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --- shared checks -------------------------------------------------------------------------

def _check_data_dir(directory):
    if directory is None:
        return None
    directory = os.path.expanduser(directory)
    if not os.path.exists(directory):
        raise CommandError(f"data directory not found: {directory}")
    if not os.path.isdir(directory):
        raise CommandError(f"--data must be a directory, got the file {directory}")
    return directory


def _load_data(directory):
    """Load MNIST-format data as uint8 pixels; every failure becomes a CommandError."""
    from numrec.datasets import load_mnist

    try:
        (x_train, y_train), (x_test, y_test) = load_mnist(directory, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise CommandError(_describe(exc)) from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise CommandError(f"cannot read the data: {_describe(exc)}") from None
    return (x_train, y_train), (x_test, y_test)


def _check_output(path):
    """Fail before training if the model could not be saved at ``path``."""
    from numrec._files import writable_target

    path = os.path.expanduser(path)
    if os.path.isdir(path):
        raise CommandError(f"--output is a directory: {path} (give a file name)")
    if os.path.exists(path):
        try:  # a device, a pipe, a socket: never replaced
            writable_target(path)
        except OSError as exc:
            raise CommandError(f"cannot save the model to {path}: {exc.strerror}") from None
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CommandError(f"cannot save the model to {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"cannot save the model to {path}: directory {parent} is not writable")
    return path


def _check_plot_dir(directory):
    """Fail early if pictures were asked for but cannot be drawn or written."""
    if directory is None:
        return None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError("--plot needs matplotlib: pip install matplotlib") from None
    directory = os.path.expanduser(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CommandError(f"--plot must be a directory, got the file {directory}")
    try:  # before any work, so that a bad directory costs nothing
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--plot: cannot make the directory {directory}: "
                           f"{exc.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise CommandError(f"--plot: cannot write into {directory}")
    return directory


def _write_plots(directory, model, x_test, y_test, history=None):
    from numrec import plotting

    return [os.fspath(p) for p in plotting.write_all(directory, model, x_test, y_test,
                                                     history=history)]


def _load_model(path, output_activation=None):
    import numrec
    from numrec.seed_format import is_seed_model

    if not os.path.exists(path):
        raise CommandError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory, not a model file")
    if output_activation is not None and not is_seed_model(path):
        raise CommandError(f"--output-activation applies only to models in the seed's text "
                           f"format; {path} records its own output activation")
    try:
        return numrec.load(path, output=output_activation)
    except (ValueError, TypeError, OSError, EOFError, KeyError, zlib.error) as exc:
        message = _describe(exc)
        prefix = f"{os.fspath(path)}: "
        if message.startswith(prefix):
            message = message[len(prefix):]
        raise CommandError(f"cannot load the model {path}: {message}") from None


def _check_mnist_model(model, path):
    n_inputs = model.n_inputs
    if n_inputs is not None and n_inputs != N_PIXELS:
        raise CommandError(
            f"the model {path} expects {n_inputs} inputs, but digit images have "
            f"{N_PIXELS} (28 x 28) pixels"
        )
    n_outputs = model.predict(np.zeros((1, N_PIXELS), dtype=model.dtype)).shape[1]
    if n_outputs != N_CLASSES:
        raise CommandError(
            f"the model {path} has {n_outputs} outputs, but there are {N_CLASSES} digits"
        )


# --- numrec train --------------------------------------------------------------------------

class _Progress:
    """Per-epoch lines and, on a terminal, a live bar rewritten with carriage returns."""

    def __init__(self, max_epochs, quiet, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.max_epochs = max_epochs
        self.width = len(str(max_epochs))
        self.live = not quiet and _isatty(self.stream)
        self.epoch = 1
        self._bar_shown = False

    def bar(self, done, total):
        if not self.live:
            return
        filled = int(30 * done / total) if total else 30
        text = (f"\repoch {self.epoch:>{self.width}}/{self.max_epochs} "
                f"[{'#' * filled}{'.' * (30 - filled)}] {100 * done / max(total, 1):3.0f}%"
                f"  {done}/{total}")
        self.stream.write(text)
        self.stream.flush()
        self._bar_shown = True

    def clear(self):
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._bar_shown = False

    def epoch_done(self, epoch, history):
        self.epoch = epoch + 1
        if self.quiet:
            return
        self.clear()
        print(f"epoch {epoch:>{self.width}}/{self.max_epochs}  "
              f"loss {history.loss[-1]:.5f}  "
              f"test accuracy {100 * history.val_accuracy[-1]:6.2f} %  "
              f"{history.seconds[-1]:6.2f} s", file=self.stream, flush=True)

    def say(self, text):
        if not self.quiet:
            self.clear()
            print(text, file=self.stream, flush=True)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _train(args):
    """``numrec train``: SIGTERM stops it as Ctrl-C does (the model so far is saved)."""
    previous = _handle_sigterm()
    try:
        return _train_and_save(args)
    finally:
        _restore_sigterm(previous)


def _train_and_save(args):
    import numrec

    setup = _setup(args)
    data_dir = _check_data_dir(args.data)
    output = _check_output(args.output)
    plot_dir = _check_plot_dir(args.plot)
    if args.epochs is not None and args.target_accuracy is None:
        max_epochs, target = args.epochs, None
    else:
        max_epochs = args.epochs if args.epochs is not None else MAX_EPOCHS
        target = args.target_accuracy if args.target_accuracy is not None \
            else PRESET_TARGET_PERCENT.get(args.preset, DEFAULT_TARGET_PERCENT)
    quiet = args.quiet
    progress = _Progress(max_epochs, quiet)

    (x_train, y_train), (x_test, y_test) = _load_data(data_dir)
    try:
        model, optimizer = setup.model(seed=args.seed), setup.optimizer()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"numrec train: error: {exc}") from None
    if output.lower().endswith(".txt"):
        from numrec.seed_format import check_seed_model

        try:  # before training, not after
            check_seed_model(model)
        except ValueError as exc:
            raise UsageError(f"numrec train: error: --output {output}: {exc}") from None
    goal = (f"until test accuracy exceeds {target:g} % (at most {_epochs(max_epochs)})"
            if target is not None else f"for {_epochs(max_epochs)}")
    progress.say(f"training {setup.describe()} on {len(x_train)} images (testing on "
                 f"{len(x_test)}), seed {args.seed}, {goal}")

    state = {"history": None}

    def on_epoch(epoch, history):
        state["history"] = history
        progress.epoch_done(epoch, history)

    try:
        with warnings.catch_warnings():  # a stalled network is reported below, in one line
            warnings.simplefilter("ignore", numrec.TrainingWarning)
            history = model.fit(
                x_train, y_train, epochs=max_epochs,
                # Buffers are sized by the batch: no larger than the data.
                batch_size=min(setup.batch_size, len(x_train)),
                optimizer=optimizer, shuffle=setup.shuffle,
                validation_data=(x_test, y_test), seed=args.seed,
                target_accuracy=None if target is None else target / 100,
                on_epoch=on_epoch, on_progress=progress.bar, threads=_threads(args.threads),
                dataset=_dataset_record(data_dir),
            )
        # In the try: a signal between the end of training and the save still saves.
        waited = _save_uninterrupted(model, output, after_signal=False)
    except numrec.DivergedError:
        progress.clear()
        history = state["history"]
        epoch = history.epochs + 1 if history is not None else 1
        raise CommandError(
            f"training diverged: the loss became NaN or infinite in epoch {epoch}; "
            f"try a lower learning rate than --lr {setup.lr:g}"
        ) from None
    except KeyboardInterrupt as exc:
        progress.clear()
        history = state["history"]
        how, status = _stop(exc)
        try:
            _save_uninterrupted(model, output)
        except KeyboardInterrupt as again:  # a second signal: stop at once
            print(f"numrec: {how}, then {_stop(again)[0]} during the save: stopped without "
                  f"saving ({output} is as it was)", file=sys.stderr, flush=True)
            return _stop(again)[1]
        done = history.epochs if history is not None else 0
        finished = done == max_epochs or (history is not None and history.reached_target)
        when = f"after the last epoch ({done})" if finished else f"in epoch {done + 1}"
        print(f"numrec: {how} {when}; the model trained so far is saved to {output}",
              file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(_train_summary(args, setup, history, output, target,
                                            interrupted=True)),
                  flush=True)
        return status

    if waited is not None:  # a signal during the save, which completed first
        how, status = _stop(waited)
        print(f"numrec: {how}; the model is saved to {output}", file=sys.stderr)
        return status
    summary = _train_summary(args, setup, history, output, target)
    train_seconds = summary["train_seconds"]
    accuracy = 100 * summary["test_accuracy"]
    failed = target is not None and not history.reached_target
    if failed:
        text = (f"test accuracy did not exceed {target:g} % within {_epochs(history.epochs)} "
                f"(last {accuracy:.2f} %, {train_seconds:.1f} s); model saved to {output}")
    elif target is not None:
        text = (f"test accuracy {accuracy:.2f} % after {_epochs(history.epochs)} in "
                f"{train_seconds:.1f} s; model saved to {output}")
    else:
        text = (f"trained {_epochs(history.epochs)} in {train_seconds:.1f} s: test accuracy "
                f"{accuracy:.2f} %; model saved to {output}")
    if plot_dir is not None:
        try:
            paths = _write_plots(plot_dir, model, x_test, y_test, history)
        except (OSError, ValueError) as exc:
            raise CommandError(f"the model is saved to {output}, but the pictures could not "
                               f"be drawn: {_describe(exc)}") from None
        summary["plots"] = paths
        text += f"; {len(paths)} pictures in {plot_dir}"
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(text, flush=True)
    if failed and args.json:
        print(f"numrec: {text}", file=sys.stderr)
    if history.stalled:
        print(f"numrec: warning: the network is not learning (test accuracy {accuracy:.2f} % "
              f"is chance level); try a lower learning rate than --lr {setup.lr:g}"
              + (", especially with several hidden layers" if len(setup.hidden) > 1 else ""),
              file=sys.stderr)
    return 1 if failed or history.stalled else 0


def _stop(exc):
    """How a signal's exception is reported: ``(word, exit status)``."""
    if isinstance(exc, Terminated):
        return "terminated", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED


def _threads(requested):
    """Threads for training: as asked, but no more than the cores this process may use
    (the results do not depend on the count)."""
    if requested is None:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(requested, max(cores, 1))


def _epochs(n):
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _handle_sigterm():
    """Make SIGTERM stop training as Ctrl-C does; return the handler it replaces."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not in the main thread: SIGTERM keeps its handler
        return None


def _restore_sigterm(previous):
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _save_uninterrupted(model, path, *, after_signal=True):
    """Save ``model``, deciding what Ctrl-C or SIGTERM during the save does.

    If the save follows a first signal, a second one stops it at once: the atomic save
    removes its temporary file, and an earlier model file stays as it was.  Otherwise
    the save completes first.  Returns the exception (:class:`KeyboardInterrupt` or
    :class:`Terminated`) of a signal that waited, or None.
    """
    arrived = []

    def on_signal(signum, frame):
        stop = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if after_signal:
            raise stop
        arrived.append(stop)

    try:
        previous = (signal.signal(signal.SIGINT, on_signal),
                    signal.signal(signal.SIGTERM, on_signal))
    except ValueError:  # not in the main thread: the save is atomic anyway
        previous = None
    try:
        model.save(path)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
    return arrived[0] if arrived else None


def _train_summary(args, setup, history, output, target, *, interrupted=False):
    history_fields = {
        "epochs": history.epochs if history else 0,
        "test_accuracy": history.val_accuracy[-1] if history and history.val_accuracy else None,
        "train_seconds": float(sum(history.seconds)) if history else 0.0,
        "reached_target": bool(history.reached_target) if history else False,
        "loss": list(history.loss) if history else [],
        "val_accuracy": list(history.val_accuracy) if history else [],
        "epoch_seconds": list(history.seconds) if history else [],
        "fused": bool(history.fused) if history else None,
        "stalled": bool(history.stalled) if history else False,
    }
    return {
        **{key: history_fields[key] for key in
           ("epochs", "test_accuracy", "train_seconds", "reached_target")},
        "model": output,
        "target_accuracy": None if target is None else target / 100,
        "preset": args.preset,
        "batch_size": setup.batch_size,
        "lr": setup.lr,
        "hidden": list(setup.hidden),
        "activation": setup.activation,
        "output_activation": setup.output_activation,
        "loss_function": setup.loss_name,
        "optimizer": setup.optimizer().get_config() | {"name": setup.optimizer_name},
        "init": setup.init,
        "shuffle": setup.shuffle,
        "seed": args.seed,
        "data": args.data,
        "interrupted": interrupted,
        **{key: history_fields[key] for key in ("loss", "val_accuracy", "epoch_seconds", "fused",
                                                 "stalled")},
    }


# --- numrec evaluate -----------------------------------------------------------------------

def _dataset_record(data_dir):
    """What ``numrec train`` records as the model's :attr:`~numrec.Sequential.dataset`
    for the data in ``data_dir`` (None: $NUMREC_DATA, else the bundled MNIST)."""
    from numrec.datasets.mnist import DATA_ENV

    directory = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if directory is None:
        return {"name": "MNIST", "class_names": [str(digit) for digit in range(N_CLASSES)]}
    source = os.path.abspath(directory)
    return {"name": os.path.basename(source) or source, "source": source}


def _evaluation_data(model, data_dir):
    """The test data ``numrec evaluate`` uses and how to name it: ``--data``, else the
    data the model was trained on (its :attr:`~numrec.Sequential.dataset`), else
    $NUMREC_DATA or the bundled MNIST, as before models recorded their data."""
    from numrec.datasets.mnist import DATA_ENV

    dataset = model.dataset
    if data_dir is not None:
        return _load_data(data_dir), {"name": os.path.basename(os.path.abspath(data_dir)),
                                      "source": os.path.abspath(data_dir)}, False
    if dataset is None:
        directory = os.environ.get(DATA_ENV) or None
        name = "MNIST" if directory is None else os.path.basename(os.path.abspath(directory))
        return _load_data(None), {"name": name, "source": directory}, False
    if dataset["source"] is not None:
        if not os.path.isdir(dataset["source"]):
            raise CommandError(f"the model was trained on {dataset['name']} from "
                               f"{dataset['source']}, which is not there: give --data DIR")
        return _load_data(dataset["source"]), dataset, True
    hidden = os.environ.pop(DATA_ENV, None)  # the bundled copy, whatever $NUMREC_DATA says
    try:
        return _load_data(None), dataset, True
    finally:
        if hidden is not None:
            os.environ[DATA_ENV] = hidden


def _check_data_shape(model, x_test, data):
    """Refuse data whose samples differ in size from the model's (or its training data's)."""
    width = x_test.shape[1]
    dataset = model.dataset
    if dataset is not None and math.prod(dataset["input_shape"]) != width:
        shape = " x ".join(map(str, dataset["input_shape"]))
        raise CommandError(f"the model was trained on {dataset['name']} ({shape} values per "
                           f"sample), but the test data of {data['name']} has {width}")
    if model.n_inputs is not None and model.n_inputs != width:
        raise CommandError(f"the model expects {model.n_inputs} inputs, but the test data "
                           f"of {data['name']} has {width} values per sample")


def _describe_data(data, trained_on):
    where = "the bundled copy" if data["source"] is None else data["source"]
    return f"{data['name']} ({where}){', the data the model was trained on' if trained_on else ''}"


def _evaluate(args):
    model = _load_model(args.model, args.output_activation)
    data_dir = _check_data_dir(args.data)
    plot_dir = _check_plot_dir(args.plot)
    _check_mnist_model(model, args.model)
    (_, (x_test, y_test)), data, trained_on = _evaluation_data(model, data_dir)
    _check_data_shape(model, x_test, data)
    if data_dir is not None and model.dataset is not None \
            and model.dataset["source"] != data["source"]:
        print(f"numrec: note: the model was trained on "
              f"{_describe_data(model.dataset, False)}", file=sys.stderr)
    predicted = model.predict_classes(x_test)
    labels = y_test.astype(np.int64)
    confusion = np.bincount(labels * N_CLASSES + predicted,
                            minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)
    correct = int(np.trace(confusion))
    accuracy = correct / len(labels) if len(labels) else 0.0
    summary = {
        "model": args.model,
        "test_accuracy": accuracy,
        "correct": correct,
        "n_samples": int(len(labels)),
        "confusion_matrix": confusion.tolist(),
        "data": {"name": data["name"], "source": data["source"], "trained_on": trained_on},
    }
    if plot_dir is not None:
        summary["plots"] = _write_plots(plot_dir, model, x_test, y_test)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"test set: {_describe_data(data, trained_on)}")
    print(f"test accuracy {100 * accuracy:.2f} % ({correct} of {len(labels)} images)")
    print()
    print(format_confusion(confusion))
    if plot_dir is not None:
        print(f"\n{len(summary['plots'])} pictures in {plot_dir}")
    return 0


def format_confusion(confusion):
    """Return a confusion matrix as text: rows true classes, columns predicted, then recall."""
    confusion = np.asarray(confusion)
    n = len(confusion)
    width = max(5, len(str(int(confusion.max(initial=0)))) + 1)
    lines = ["confusion matrix (rows: true digit, columns: predicted digit)",
             "true " + "".join(f"{c:>{width}}" for c in range(n)) + "   recall"]
    for true, row in enumerate(confusion):
        total = row.sum()
        recall = f"{100 * row[true] / total:6.2f} %" if total else "     -"
        lines.append(f"{true:>4} " + "".join(f"{v:>{width}}" for v in row) + "  " + recall)
    return "\n".join(lines)


# --- numrec serve --------------------------------------------------------------------------

def _serve(args):
    from numrec.serve import run

    return run(args)


# --- numrec info and numrec export -----------------------------------------------------------

def _info(args):
    from numrec._sysinfo import collect, format_text

    info = collect()
    print(json.dumps(info) if args.json else "\n".join(format_text(info)))
    return 0


def _export(args):
    from numrec.onnx_export import ExportError

    model = _load_model(args.model, args.output_activation)
    try:
        model.to_onnx(args.output)
    except (ExportError, ImportError) as exc:
        raise CommandError(f"cannot export {args.model}: {exc}") from None
    print(f"wrote {args.output}")
    return 0


# --- numrec predict ------------------------------------------------------------------------

def _predict(args):
    from numrec.images import ImageError, load_digit

    model = _load_model(args.model, args.output_activation)
    _check_mnist_model(model, args.model)
    results, digits = [], []
    for path in args.images:
        try:
            digits.append(load_digit(path).reshape(N_PIXELS))
            results.append({"image": path})
        except (ImageError, OSError) as exc:
            results.append({"image": path, "error": _describe(exc)})
    if digits:
        probabilities = np.asarray(model.predict_proba(np.stack(digits).astype(model.dtype)),
                                   dtype=np.float64)
        good = (r for r in results if "error" not in r)
        for result, p in zip(good, probabilities):
            result["digit"] = int(p.argmax())
            result["probabilities"] = [round(float(v), 6) for v in p]
    if args.json:
        print(json.dumps(results))
    elif digits:
        print("probabilities: " + ("the network's softmax outputs"
                                   if model.outputs_probabilities else
                                   "the network's 10 outputs divided by their sum"))
        width = max(len(r["image"]) for r in results)
        for r in results:
            if "error" not in r:
                p, digit = r["probabilities"], r["digit"]
                spread = "  ".join(f"{d}:{v:.3f}" for d, v in enumerate(p))
                print(f"{r['image']:<{width}}  {digit}  ({100 * p[digit]:5.1f} %)   {spread}")
    sys.stdout.flush()
    errors = [r["error"] for r in results if "error" in r]
    for message in errors:
        print(f"numrec: error: {message}", file=sys.stderr)
    return 1 if errors else 0
