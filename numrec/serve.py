"""``numrec serve``: a local web page that recognises the digit you draw.

The server is the standard library's :class:`http.server.ThreadingHTTPServer`: the page
and its two endpoints need no routing, templating or asynchronous machinery, and it is
meant for one person's browser on the same machine, so no third-party dependency is
worth its upkeep (the ``serve`` extra of the package is therefore empty).

Endpoints
---------
``GET /``, ``/app.js``, ``/style.css``, ``/favicon.svg``
    The page (package data in :mod:`numrec.serve_page`, read once at start-up).
``GET /health``
    ``200 {"status": "ok", ...}`` once the model is loaded, ``503`` before.
``POST /predict``
    A PNG picture of a digit (any size up to :data:`MAX_IMAGE_PIXELS` pixels), or JSON
    ``{"pixels": [[...28 rows of 28 values 0-255...]]}``; either is brought to MNIST's form
    exactly as ``numrec predict`` does (:func:`numrec.images.to_mnist`).  The answer::

        {"class": 7, "probabilities": [... 10 floats ...], "image": [... 28 rows of 28 ints ...]}

    ``image`` is the 28 × 28 picture the network saw, as grey levels 0-255.

Bad requests get a 4xx status and ``{"error": "<one line>"}``; the server goes on.  Request
bodies are held in memory only (never written to disk), and limited to
:data:`MAX_BODY_BYTES`.
"""
import http.server
import io
import ipaddress
import json
import math
import os
import socket
import sys
import threading
import time
import warnings
from importlib import resources

import numpy as np

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Largest picture accepted, in pixels (width × height), checked before decoding.
MAX_IMAGE_PIXELS = 2048 * 2048
#: Seconds a connection may stay silent before the server closes it.
CONNECTION_TIMEOUT = 15
#: Side of the image the network sees.
SIDE = 28
#: The default model: the reference network trained this many epochs, with this seed.
DEFAULT_EPOCHS = 2
DEFAULT_SEED = 0
#: File name of the default model in numrec's cache directory.
DEFAULT_MODEL_NAME = "serve-model.npz"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
#: Everything the page loads comes from this server.
_PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; connect-src 'self'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# --- turning a request body into the network's input -----------------------------------------

def decode_png(body, *, max_pixels=MAX_IMAGE_PIXELS):
    """Decode a PNG held in memory and return its grey levels, float64 in [0, 1].

    Parameters
    ----------
    body : bytes
        The PNG file's bytes.
    max_pixels : int
        Pictures with more pixels are refused before their data is decoded.

    Returns
    -------
    ndarray, shape (height, width)

    Raises
    ------
    RequestError
        400 for data that is not a readable PNG, 413 for a picture above ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    from numrec.images import _grey_levels, _reduced

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body), formats=["PNG"]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise RequestError(413, f"the picture has {width} x {height} pixels; "
                                            f"at most {max_pixels} are accepted")
                image.load()
                # As numrec predict reads a file (numrec.images.read_grey).
                return _grey_levels(_reduced(image), "the picture")
    except UnidentifiedImageError:
        raise RequestError(400, "the body is not a PNG image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(413, "the picture is too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise RequestError(400, f"cannot decode the PNG image: {exc}") from None


def parse_pixels(body):
    """Read ``{"pixels": 28 rows of 28 numbers 0-255}`` and return grey levels in [0, 1].

    Returns
    -------
    ndarray, shape (28, 28), float64

    Raises
    ------
    RequestError
        400 naming what is wrong: not JSON, no ``pixels``, the wrong shape, a value that
        is not a number from 0 to 255.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or "pixels" not in document:
        raise RequestError(400, 'expected a JSON object {"pixels": [28 rows of 28 values]}')
    rows = document["pixels"]
    if not isinstance(rows, list) or len(rows) != SIDE:
        raise RequestError(400, f"pixels must be a list of {SIDE} rows, got "
                                f"{_count(rows, 'rows')}")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != SIDE:
            raise RequestError(400, f"pixels row {index} must hold {SIDE} values, got "
                                    f"{_count(row, 'values')}")
        for column, value in enumerate(row):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or not 0 <= value <= 255):
                raise RequestError(400, f"pixels[{index}][{column}] must be a number from 0 "
                                        f"to 255, got {json.dumps(value)[:40]}")
    return np.asarray(rows, dtype=np.float64) / 255


def _count(value, unit):
    """How many ``unit`` a JSON list holds, or what else the value is."""
    if isinstance(value, list):
        return f"{len(value)} {unit if len(value) != 1 else unit[:-1]}"
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
             (dict, "an object"))
    return next(name for kind, name in kinds if isinstance(value, kind))


def body_to_grey(body, content_type=""):
    """Grey levels of a request body: a PNG (recognised by its signature) or JSON pixels."""
    if body.startswith(_PNG_SIGNATURE) or content_type == "image/png":
        return decode_png(body)
    if content_type == "application/json" or body.lstrip()[:1] == b"{":
        return parse_pixels(body)
    raise RequestError(415, 'expected a PNG image or JSON {"pixels": [28 rows of 28 values]}')


# --- the model --------------------------------------------------------------------------------

class Recogniser:
    """A digit model and the steps that feed it a picture.

    Parameters
    ----------
    model : Sequential
        Any model taking 784 inputs (a 28 × 28 image, row by row) and giving 10 outputs.
    name : str
        How ``/health`` names it.
    """

    def __init__(self, model, name="model"):
        self.model = model
        self.name = name
        self._lock = threading.Lock()  # layers keep per-call buffers: one forward at a time

    def recognise(self, grey):
        """Centre ``grey`` as ``numrec predict`` does and classify it.

        Returns
        -------
        dict
            ``class`` (int), ``probabilities`` (10 floats), ``image`` (28 × 28 ints 0-255).

        Raises
        ------
        RequestError
            422 if the picture holds no digit (it is blank).
        """
        from numrec.images import ImageError, to_mnist

        try:
            digit = to_mnist(grey, name="the picture")
        except ImageError as exc:
            raise RequestError(422, str(exc)) from None
        row = digit.reshape(1, SIDE * SIDE).astype(self.model.dtype)
        with self._lock:
            probabilities = np.asarray(self.model.predict_proba(row))[0]
        return {
            "class": int(probabilities.argmax()),
            # The shortest decimals that give back the model's float32 or float64 values.
            "probabilities": [float(str(p)) for p in probabilities],
            "image": np.rint(digit * 255).astype(int).tolist(),
        }


# --- HTTP ---------------------------------------------------------------------------------------

class DigitServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server for the page and its endpoints.

    ``recogniser`` is None until the model is loaded (``/health`` answers 503 meanwhile).
    Bound to a loopback address, it answers only requests whose ``Host`` is a loopback
    name, so that no other web site can reach it through DNS rebinding.
    """

    daemon_threads = True
    block_on_close = False
    #: Whether the per-request log on stderr is silenced.
    quiet = False

    def __init__(self, address, recogniser=None):
        self.recogniser = recogniser
        self.page = _read_page()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.loopback_only = _is_loopback(self.server_address[0])

    def handle_error(self, request, client_address):
        """A client that went away is no error; anything else is one line on stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(f"numrec serve: error while answering {client_address[0]}: "
              f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)

    @property
    def url(self):
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def _read_page():
    files = resources.files("numrec.serve_page")
    return {path: (files.joinpath(name).read_bytes(), kind)
            for path, (name, kind) in _PAGE_FILES.items()}


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line
    timeout = CONNECTION_TIMEOUT
    disable_nagle_algorithm = True  # small answers go out at once

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")

    def do_PATCH(self):
        self._route("PATCH")

    def do_OPTIONS(self):
        self._route("OPTIONS")

    def _route(self, method):
        try:
            self._check_host()
            path = self.path.split("?", 1)[0]
            if path == "/predict":
                self._allow(method, ("POST",))
                self._predict()
            elif path == "/health":
                self._allow(method, ("GET", "HEAD"))
                self._health(method)
            elif path in self.server.page:
                self._allow(method, ("GET", "HEAD"))
                body, kind = self.server.page[path]
                self._send(200, body, kind, head=method == "HEAD",
                           extra={"Content-Security-Policy": _PAGE_POLICY})
            else:
                raise RequestError(404, f"no such page: {path[:100]}")
        except RequestError as exc:
            self._send_json(exc.status, {"error": str(exc)}, head=method == "HEAD")
        except Exception as exc:  # a fault of ours must not stop the server either
            self.log_error("internal error: %r", exc)
            self._send_json(500, {"error": "internal error"}, head=method == "HEAD")

    def _check_host(self):
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in _LOOPBACK_NAMES:
            self.close_connection = True
            raise RequestError(403, "this server answers only to localhost")

    def _allow(self, method, allowed):
        if method not in allowed:
            self.close_connection = True  # any body is left unread
            self._allowed = ", ".join(allowed)
            raise RequestError(405, f"{method} is not allowed here; use "
                                    f"{' or '.join(allowed)}")

    def _health(self, method):
        recogniser = self.server.recogniser
        if recogniser is None:
            raise RequestError(503, "the model is still loading")
        self._send_json(200, {"status": "ok", "model": recogniser.name},
                        head=method == "HEAD")

    def _predict(self):
        body = self._read_body()
        recogniser = self.server.recogniser
        if recogniser is None:
            raise RequestError(503, "the model is still loading")
        kind = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        answer = recogniser.recognise(body_to_grey(body, kind))
        self._send_json(200, answer)

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length: {length[:40]!r}")
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(413, f"the body has {size} bytes; at most {MAX_BODY_BYTES} "
                                    f"are accepted")
        body = self.rfile.read(size)
        if len(body) < size:
            self.close_connection = True
            raise RequestError(400, "the body is shorter than its Content-Length")
        return body

    def version_string(self):
        return "numrec"

    def handle_expect_100(self):
        """Refuse an announced oversized body before the client sends it."""
        try:
            size = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            size = 0
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"error": f"the body has {size} bytes; at most "
                                           f"{MAX_BODY_BYTES} are accepted"})
            return False
        return super().handle_expect_100()

    def _send_json(self, status, document, *, head=False):
        extra = {"Cache-Control": "no-store"}
        if status == 405:
            extra["Allow"] = getattr(self, "_allowed", "GET")
        self._send(status, json.dumps(document).encode(), "application/json", head=head,
                   extra=extra)

    def _send(self, status, body, kind, *, head=False, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """Errors found by the standard library (a malformed request line, an unknown
        method, headers too long) answer in JSON too."""
        self.close_connection = True
        try:
            self._send_json(code, {"error": message or self.responses.get(code, ("error",))[0]})
        except OSError:
            pass

    def log_message(self, format, *args):
        if self.server.quiet:
            return
        super().log_message(format, *args)



def make_server(recogniser=None, host="127.0.0.1", port=0, *, quiet=False):
    """Bind a :class:`DigitServer` on ``host``:``port`` (0: a free port) without serving yet.

    Call ``serve_forever()`` (in a thread, say) to answer requests; ``shutdown()`` then
    ``server_close()`` to stop.  ``quiet`` silences the per-request log on stderr.
    """
    server = DigitServer((host, port), recogniser)
    server.quiet = quiet
    return server


# --- the default model ---------------------------------------------------------------------------

def cache_dir():
    """numrec's cache directory: ``$XDG_CACHE_HOME/numrec``, else ``~/.cache/numrec``."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "numrec")


def default_model_path():
    """Where the default model of ``numrec serve`` is cached."""
    return os.path.join(cache_dir(), DEFAULT_MODEL_NAME)


def train_default_model(*, epochs=DEFAULT_EPOCHS, seed=DEFAULT_SEED, report=None):
    """Train the reference network on the MNIST copy shipped with numrec.

    784 → 256 → 10, LeakyReLU(0.2), Sigmoid, quadratic cost, SGD with learning rate 0.75,
    batch 32 (``numrec train``'s defaults), for ``epochs`` epochs with ``seed``;
    ``report(text)`` receives a line per epoch.

    Returns
    -------
    Sequential
    """
    import numrec
    from numrec.datasets.mnist import _load_bundled, _prepare

    # The bundled copy even where $NUMREC_DATA names another data set.
    arrays = _load_bundled()
    x_train, y_train = _prepare(arrays[0], arrays[1], "training", np.dtype(np.uint8), True)
    x_test, y_test = _prepare(arrays[2], arrays[3], "test", np.dtype(np.uint8), True)
    model = numrec.mnist_mlp(seed=seed)

    def on_epoch(epoch, history):
        if report is not None:
            report(f"epoch {epoch}/{epochs}: test accuracy "
                   f"{100 * history.val_accuracy[-1]:.2f} %, {history.seconds[-1]:.1f} s")

    model.fit(x_train, y_train, epochs=epochs, batch_size=32, loss=numrec.MSE(),
              optimizer=numrec.SGD(lr=0.75), validation_data=(x_test, y_test), seed=seed,
              on_epoch=on_epoch)
    return model


def load_default_model(report):
    """The cached default model, trained and saved there first if need be.

    ``report(text)`` receives what happens, a line at a time.
    """
    import numrec

    path = default_model_path()
    if os.path.isfile(path):
        try:
            return numrec.load(path), path
        except (ValueError, TypeError, OSError, EOFError, KeyError) as exc:
            report(f"cannot load the cached model {path} ({_one_line(exc)}); training it again")
    report(f"no model given: training the reference network on the bundled MNIST "
           f"({DEFAULT_EPOCHS} epochs, seed {DEFAULT_SEED}); it is cached in {path}")
    model = train_default_model(report=report)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model.save(path)
    except OSError as exc:
        report(f"cannot cache the model in {path} ({_one_line(exc)}); using it unsaved")
    return model, path


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


# --- the command -----------------------------------------------------------------------------------

def run(args):
    """``numrec serve``: bind, print the address, load the model, serve until Ctrl-C."""
    from numrec import cli

    if args.model is not None:
        model = cli._load_model(args.model, args.output_activation)
        cli._check_mnist_model(model, args.model)
    elif args.output_activation is not None:
        raise cli.UsageError("numrec serve: error: --output-activation applies only to a "
                             "MODEL in the seed's text format")
    try:
        server = make_server(None, args.host, args.port, quiet=not args.log)
    except OSError as exc:
        raise cli.CommandError(f"cannot listen on {args.host} port {args.port}: "
                               f"{exc.strerror or exc}") from None
    thread = threading.Thread(target=server.serve_forever, name="numrec-serve", daemon=True)
    thread.start()
    try:
        print(f"numrec serve: open {server.url} in a browser (Ctrl-C stops)", flush=True)
        if not server.loopback_only:
            print(f"numrec serve: warning: listening on {args.host}: other machines that can "
                  f"reach it may use this page", file=sys.stderr, flush=True)
        if args.model is None:
            def report(text):
                print(f"numrec serve: {text}", file=sys.stderr, flush=True)

            start = time.perf_counter()
            model, path = load_default_model(report)
            report(f"model ready ({path}, {time.perf_counter() - start:.1f} s)")
            name = path
        else:
            name = args.model
        server.recogniser = Recogniser(model, name=os.fspath(name))
        while thread.is_alive():
            thread.join(0.5)
        return 0
    finally:
        server.shutdown()
        server.server_close()
