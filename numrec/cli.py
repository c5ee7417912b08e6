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
does the same with status 143.

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
                          help="directory with the MNIST-format IDX files (default: "
                               "$NUMREC_DATA, else the bundled copy)")
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
        print("numrec: error: choose a command: train, evaluate or predict "
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
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        raise CommandError(f"--output is a directory: {path} (give a file name)")
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
                x_train, y_train, epochs=max_epochs, batch_size=setup.batch_size,
                optimizer=optimizer, shuffle=setup.shuffle,
                validation_data=(x_test, y_test), seed=args.seed,
                target_accuracy=None if target is None else target / 100,
                on_epoch=on_epoch, on_progress=progress.bar, threads=args.threads,
            )
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
        _save_uninterrupted(model, output)
        done = history.epochs if history is not None else 0
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"numrec: {how} in epoch {done + 1}; the model trained so far is saved "
              f"to {output}", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(_train_summary(args, setup, history, output, target,
                                            interrupted=True)),
                  flush=True)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED

    terminated = _save_uninterrupted(model, output, after_signal=False)
    if terminated:  # SIGTERM during the save, which completed first
        print(f"numrec: terminated; the model is saved to {output}", file=sys.stderr)
        return EXIT_TERMINATED
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
    """Save ``model``; Ctrl-C waits until the file is complete.

    SIGTERM during the save stops at once if the save follows a first signal (the atomic
    save removes its temporary file; an earlier model file stays as it was); otherwise
    the save completes first.  Returns True if a SIGTERM arrived and waited.
    """
    arrived = []

    def on_sigterm(signum, frame):
        if after_signal:
            raise Terminated()
        arrived.append(signum)

    try:
        previous = (signal.signal(signal.SIGINT, signal.SIG_IGN),
                    signal.signal(signal.SIGTERM, on_sigterm))
    except ValueError:  # not in the main thread: the save is atomic anyway
        previous = None
    try:
        model.save(path)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
    return bool(arrived)


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

def _evaluate(args):
    model = _load_model(args.model, args.output_activation)
    data_dir = _check_data_dir(args.data)
    plot_dir = _check_plot_dir(args.plot)
    _check_mnist_model(model, args.model)
    _, (x_test, y_test) = _load_data(data_dir)
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
    }
    if plot_dir is not None:
        summary["plots"] = _write_plots(plot_dir, model, x_test, y_test)
    if args.json:
        print(json.dumps(summary))
        return 0
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
