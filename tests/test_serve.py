"""``numrec serve``: the HTTP endpoints through a real client, the command, the default model.

A server runs in a thread on a free loopback port with a small network trained here; its
answers are checked against ``model.predict_proba`` on the image that ``numrec predict``'s
own steps make of the same picture.
"""
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import numrec
from numrec import serve
from numrec.images import load_digit, to_mnist


@pytest.fixture(scope="session")
def digit_model(mnist):
    """The reference network after two epochs on 20000 MNIST images (about 94 % right)."""
    (x_train, y_train), _ = mnist
    model = numrec.mnist_mlp(seed=0)
    model.fit(x_train[:20000], y_train[:20000], epochs=2, batch_size=32, loss=numrec.MSE(),
              optimizer=numrec.SGD(lr=0.75), seed=0)
    return model


def start_server(recogniser):
    """A server on a free loopback port, serving in a thread; returns it and its base URL."""
    server = serve.make_server(recogniser, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, server.url.rstrip("/")


def stop_server(server):
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def base_url(digit_model):
    server, url = start_server(serve.Recogniser(digit_model, name="test model"))
    yield url
    stop_server(server)


def request(url, data=None, *, method=None, headers=None):
    """``(status, headers, parsed JSON body)`` of one request made with urllib."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, json.loads(error.read())


def raw_request(url, text):
    """Send ``text`` as is over a socket; return the status and the parsed JSON body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(text)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_answer(model, digit):
    """What the server should answer for a centred 28 x 28 digit, computed here."""
    probabilities = model.predict_proba(digit.reshape(1, 784).astype(model.dtype))[0]
    return int(np.argmax(probabilities)), probabilities, np.rint(digit * 255).astype(int)


def assert_answer(answer, model, digit):
    digit_class, probabilities, image = expected_answer(model, digit)
    assert set(answer) == {"class", "probabilities", "image"}
    assert answer["class"] == digit_class
    assert len(answer["probabilities"]) == 10
    np.testing.assert_allclose(answer["probabilities"], probabilities, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(np.array(answer["image"]), image)


def assert_still_answering(url):
    status, _, document = request(url + "/health")
    assert (status, document["status"]) == (200, "ok")


# --- the endpoints -----------------------------------------------------------------------------

def test_health_answers_once_the_model_is_loaded(base_url):
    status, headers, document = request(base_url + "/health")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert document == {"status": "ok", "model": "test model"}


def test_health_and_predict_answer_503_while_the_model_loads(digit_model):
    server, url = start_server(None)
    try:
        assert request(url + "/health")[0] == 503
        status, _, document = request(url + "/predict", png_bytes(np.zeros((8, 8), np.uint8)))
        assert status == 503 and "loading" in document["error"]
        server.recogniser = serve.Recogniser(digit_model)
        assert request(url + "/health")[0] == 200
    finally:
        stop_server(server)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_png_is_answered_as_numrec_predict_reads_the_file(base_url, digit_model, mnist,
                                                            tmp_path, index):
    """A large dark-on-light picture, as a drawing would be: the server's answer equals the
    model's on ``load_digit`` of the same file read from disk."""
    _, (x_test, _) = mnist
    picture = Image.fromarray(255 - x_test[index].reshape(28, 28)).resize((280, 280))
    path = tmp_path / "digit.png"
    picture.save(path)
    status, headers, answer = request(base_url + "/predict", path.read_bytes(),
                                      headers={"Content-Type": "image/png"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert_answer(answer, digit_model, load_digit(path))


def test_a_png_needs_no_content_type(base_url, digit_model, mnist, tmp_path):
    """``curl --data-binary @digit.png`` sends a form content type: the PNG is recognised
    by its signature."""
    _, (x_test, _) = mnist
    path = tmp_path / "digit.png"
    Image.fromarray(x_test[3].reshape(28, 28)).save(path)
    status, _, answer = request(base_url + "/predict", path.read_bytes(), headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    assert_answer(answer, digit_model, load_digit(path))


def test_a_transparent_png_drawing_is_read_over_a_contrasting_background(
        base_url, digit_model, tmp_path):
    """A canvas exported with transparency (black strokes on nothing)."""
    rgba = np.zeros((120, 120, 4), dtype=np.uint8)
    rgba[20:100, 55:65, 3] = 255  # an opaque black bar: a "1"
    path = tmp_path / "one.png"
    Image.fromarray(rgba, "RGBA").save(path)
    status, _, answer = request(base_url + "/predict", path.read_bytes())
    assert status == 200
    assert_answer(answer, digit_model, load_digit(path))


@pytest.mark.parametrize("index", [4, 5])
def test_json_pixels_are_centred_and_answered(base_url, digit_model, mnist, index):
    _, (x_test, _) = mnist
    pixels = x_test[index].reshape(28, 28)
    body = json.dumps({"pixels": pixels.tolist()}).encode()
    status, _, answer = request(base_url + "/predict", body,
                                headers={"Content-Type": "application/json"})
    assert status == 200
    assert_answer(answer, digit_model, to_mnist(pixels / 255))


def test_json_pixels_may_be_fractional(base_url, digit_model, mnist):
    _, (x_test, _) = mnist
    pixels = x_test[6].reshape(28, 28) * (200 / 255)
    body = json.dumps({"pixels": pixels.tolist()}).encode()
    status, _, answer = request(base_url + "/predict", body)
    assert status == 200
    assert_answer(answer, digit_model, to_mnist(pixels / 255))


def test_concurrent_requests_each_get_their_own_answer(base_url, digit_model, mnist):
    _, (x_test, _) = mnist
    bodies = [png_bytes(x_test[i].reshape(28, 28)) for i in range(8)]
    answers = [None] * len(bodies)

    def ask(i):
        answers[i] = request(base_url + "/predict", bodies[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, (status, _, answer) in enumerate(answers):
        assert status == 200
        assert_answer(answer, digit_model, to_mnist(x_test[i].reshape(28, 28) / 255))


def test_keep_alive_connection_serves_several_requests(base_url, mnist):
    _, (x_test, _) = mnist
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for i in range(3):
            connection.request("POST", "/predict", png_bytes(x_test[i].reshape(28, 28)))
            response = connection.getresponse()
            assert response.status == 200
            assert len(json.loads(response.read())["probabilities"]) == 10
    finally:
        connection.close()


def _blank_png(width, height):
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")  # a few kB at any size
    return buffer.getvalue()


def _jpeg():
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buffer, format="JPEG")
    return buffer.getvalue()


def _pixels(rows):
    return json.dumps({"pixels": rows}).encode()


_BAD_BODIES = {
    "not an image": (b"hello", {}, 415, "expected a PNG image or JSON"),
    "a JPEG": (_jpeg(), {}, 415, "expected a PNG image"),
    "a JPEG said to be a PNG": (_jpeg(), {"Content-Type": "image/png"}, 400,
                                "not a PNG image"),
    "a truncated PNG": (png_bytes(np.full((40, 40), 7, np.uint8))[:60], {}, 400,
                        "cannot decode the PNG image"),
    "too many pixels": (_blank_png(5000, 4000), {}, 413,
                        f"5000 x 4000 pixels; at most {serve.MAX_IMAGE_PIXELS} are accepted"),
    "a row too many": (_blank_png(2048, 2049), {}, 413, "2048 x 2049 pixels"),
    "as many pixels as allowed": (_blank_png(2048, 2048), {}, 422, "the image is blank"),
    "a blank picture": (png_bytes(np.full((40, 40), 255, np.uint8)), {}, 422,
                        "the image is blank"),
    "invalid JSON": (b"{pixels: 1}", {}, 400, "not valid JSON"),
    "JSON not an object": (b"[1, 2]", {"Content-Type": "application/json"}, 400,
                           'expected a JSON object {"pixels"'),
    "no pixels": (b'{"pixel": []}', {}, 400, 'expected a JSON object {"pixels"'),
    "27 rows": (_pixels([[0] * 28] * 27), {}, 400, "list of 28 rows, got 27 rows"),
    "pixels a string": (_pixels("0" * 784), {}, 400, "list of 28 rows, got a string"),
    "pixels null": (_pixels(None), {}, 400, "list of 28 rows, got null"),
    "one row": (_pixels([[0] * 28]), {}, 400, "list of 28 rows, got 1 row"),
    "a row an object": (_pixels([{}] * 28), {}, 400,
                        "row 0 must hold 28 values, got an object"),
    "a short row": (_pixels([[0] * 28] * 5 + [[0] * 27] + [[0] * 28] * 22), {}, 400,
                    "row 5 must hold 28 values, got 27 values"),
    "a flat list": (_pixels([0] * 28), {}, 400, "row 0 must hold 28 values, got a number"),
    "a value above 255": (_pixels([[0] * 28] * 3 + [[0] * 9 + [256] + [0] * 18]
                                  + [[0] * 28] * 24), {}, 400,
                          "pixels[3][9] must be a number from 0 to 255, got 256"),
    "a negative value": (_pixels([[-1] + [0] * 27] + [[0] * 28] * 27), {}, 400,
                         "pixels[0][0] must be a number"),
    "a string value": (_pixels([["7"] * 28] * 28), {}, 400, 'got "7"'),
    "a boolean value": (_pixels([[True] * 28] * 28), {}, 400, "got true"),
    "NaN": (b'{"pixels": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28)
            + b"]}", {}, 400, "got NaN"),
    "blank pixels": (_pixels([[0] * 28] * 28), {}, 422, "the image is blank"),
}


@pytest.mark.parametrize("kind", list(_BAD_BODIES))
def test_a_bad_body_gets_a_4xx_json_error_and_the_server_goes_on(base_url, kind):
    body, headers, expected_status, phrase = _BAD_BODIES[kind]
    status, response_headers, document = request(base_url + "/predict", body,
                                                 headers=headers)
    assert status == expected_status
    assert response_headers["Content-Type"] == "application/json"
    assert phrase in document["error"]
    assert "\n" not in document["error"]
    assert_still_answering(base_url)


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/predict", "POST"),
    ("PUT", "/predict", "POST"),
    ("POST", "/health", "GET, HEAD"),
    ("DELETE", "/", "GET, HEAD"),
    ("POST", "/app.js", "GET, HEAD"),
])
def test_a_wrong_method_gets_405_naming_the_allowed_ones(base_url, method, path, allowed):
    status, headers, document = request(base_url + path, b"{}" if method != "GET" else None,
                                        method=method)
    assert status == 405
    assert headers["Allow"] == allowed
    assert f"{method} is not allowed here" in document["error"]
    assert_still_answering(base_url)


@pytest.mark.parametrize("path", ["/nothing", "/predict/", "/../etc/passwd", "/serve.py"])
def test_an_unknown_path_gets_404(base_url, path):
    status, _, document = request(base_url + path)
    assert status == 404
    assert "no such page" in document["error"]
    assert_still_answering(base_url)


def test_a_body_above_the_limit_is_refused_before_it_is_read(base_url):
    size = serve.MAX_BODY_BYTES + 1
    status, document = raw_request(
        base_url, f"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n"
                  f"\r\n".encode() + b"x" * 1000)
    assert status == 413
    assert f"the body has {size} bytes; at most {serve.MAX_BODY_BYTES}" in document["error"]
    assert_still_answering(base_url)


def test_a_body_above_the_limit_with_expect_100_is_refused_at_once(base_url):
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Length", str(10 * serve.MAX_BODY_BYTES))
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()  # no body was sent
        assert response.status == 413
        assert "at most" in json.loads(response.read())["error"]
    finally:
        connection.close()
    assert_still_answering(base_url)


@pytest.mark.parametrize("request_text, expected_status, phrase", [
    (b"POST /predict HTTP/1.1\r\nHost: localhost\r\n\r\n", 411, "Content-Length"),
    (b"POST /predict HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 411, "not chunked"),
    (b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: -3\r\n\r\n", 400,
     "bad Content-Length"),
    (b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: many\r\n\r\n", 400,
     "bad Content-Length"),
    (b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nshort", 400,
     "shorter than its Content-Length"),
    (b"GET /health HTTP/1.1\r\nHost: numrec.example.com\r\n\r\n", 403,
     "answers only to localhost"),
    (b"BREW /health HTTP/1.1\r\nHost: localhost\r\n\r\n", 501, "Unsupported method"),
    (b"this is not HTTP\r\n\r\n", 400, "Bad request"),
])
def test_a_malformed_request_gets_a_json_error(base_url, request_text, expected_status,
                                               phrase):
    status, document = raw_request(base_url, request_text)
    assert status == expected_status
    assert phrase in document["error"]
    assert_still_answering(base_url)


def test_loopback_names_are_accepted_as_host(base_url):
    port = base_url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
        status, document = raw_request(
            base_url, f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            .encode())
        assert (status, document["status"]) == (200, "ok")


def test_a_client_that_goes_away_is_not_reported_other_faults_in_one_line(capsys):
    server = serve.make_server(None, "127.0.0.1", 0, quiet=True)
    try:
        for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset"),
                      TimeoutError("timed out"), ValueError("a fault")):
            try:
                raise error
            except Exception:
                server.handle_error(None, ("127.0.0.1", 40000))
    finally:
        server.server_close()
    assert capsys.readouterr().err == ("numrec serve: error while answering 127.0.0.1: "
                                       "ValueError: a fault\n")


def test_head_gives_headers_without_a_body(base_url):
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("HEAD", "/health")
        response = connection.getresponse()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) > 0
        assert response.read() == b""
    finally:
        connection.close()


# --- the page ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, kind", [
    ("/", "text/html"), ("/index.html", "text/html"), ("/app.js", "text/javascript"),
    ("/style.css", "text/css"), ("/favicon.svg", "image/svg+xml"),
])
def test_the_page_is_served_from_the_package(base_url, path, kind):
    with urllib.request.urlopen(base_url + path, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].split(";")[0] == kind
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        text = response.read().decode()
    # Nothing is loaded from elsewhere: no absolute or protocol-relative addresses.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|"""
                         r"""@import|fetch\(\s*["'](https?:)?//""", text)


def test_the_page_names_its_parts(base_url):
    with urllib.request.urlopen(base_url + "/", timeout=10) as response:
        html = response.read().decode()
    for part in ('id="pad"', 'id="clear"', 'id="digit"', 'id="bars"', 'id="seen"',
                 'src="app.js"', 'href="style.css"'):
        assert part in html


# --- the command -------------------------------------------------------------------------------

def _numrec(*args, env=None):
    # SIGINT back to its default: a shell starts background jobs with it ignored.
    return subprocess.Popen([sys.executable, "-m", "numrec", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_numrec_serve_prints_its_address_answers_and_stops_on_ctrl_c(digit_model, mnist,
                                                                     tmp_path):
    digit_model.save(tmp_path / "model.npz")
    process = _numrec("serve", str(tmp_path / "model.npz"), "--port", "0")
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"numrec serve: open (http://127\.0\.0\.1:(\d+)/) in a browser "
                             r"\(Ctrl-C stops\)\n", line)
        assert match, line
        url = match.group(1).rstrip("/")
        for _ in range(100):
            try:
                status, _, document = request(url + "/health")
                if status == 200:
                    break
            except urllib.error.URLError:
                pass
            time.sleep(0.1)
        assert status == 200 and document["model"] == str(tmp_path / "model.npz")
        _, (x_test, _) = mnist
        status, _, answer = request(url + "/predict", png_bytes(x_test[0].reshape(28, 28)))
        assert status == 200
        assert_answer(answer, digit_model, to_mnist(x_test[0].reshape(28, 28) / 255))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert stderr == "numrec: interrupted\n"


@pytest.mark.parametrize("args, status, message", [
    (["missing.npz"], 1, "numrec: error: model file not found: missing.npz"),
    (["--port", "70000"], 2, "--port: must be from 0 to 65535, got 70000"),
    (["--port", "eighty"], 2, "--port: expected a port number, got 'eighty'"),
    (["--host", "no-such-host.invalid", "--port", "0"], 1,
     "numrec: error: cannot listen on no-such-host.invalid port 0"),
])
def test_numrec_serve_mistakes_are_one_line(args, status, message):
    process = _numrec("serve", *args)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_numrec_serve_refuses_a_port_in_use(digit_model, tmp_path):
    digit_model.save(tmp_path / "model.npz")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _numrec("serve", str(tmp_path / "model.npz"), "--port", str(port))
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr == f"numrec: error: cannot listen on 127.0.0.1 port {port}: " \
                     f"Address already in use\n"


def test_numrec_serve_refuses_a_model_that_does_not_read_digits(tmp_path):
    model = numrec.Sequential([numrec.Dense(10, 10, seed=0), numrec.Sigmoid()])
    model.save(tmp_path / "small.npz")
    process = _numrec("serve", str(tmp_path / "small.npz"), "--port", "0")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "expects 10 inputs, but digit images have 784" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_output_activation_needs_a_seed_model(tmp_path):
    process = _numrec("serve", "--output-activation", "sigmoid", "--port", "0")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "--output-activation applies only to a MODEL in the seed's text format" in stderr


def test_host_help_says_the_risk_plainly():
    process = _numrec("serve", "--help", env={**os.environ, "COLUMNS": "200"})
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "127.0.0.1, this machine only" in stdout
    assert "with no password and no encryption" in stdout


# --- the default model -------------------------------------------------------------------------

def _wait_for_health(url, process, seconds=300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if request(url + "/health")[0] == 200:
                return True
        except urllib.error.URLError:
            pass
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_numrec_serve_without_a_model_trains_and_caches_the_default_one(tmp_path, mnist):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cached = tmp_path / "cache" / "numrec" / "serve-model.npz"
    for run in ("first", "second"):
        process = _numrec("serve", "--port", "0", env=env)
        try:
            url = re.search(r"http://[^/]+", process.stdout.readline()).group(0)
            assert _wait_for_health(url, process)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        lines = stderr.splitlines()
        assert process.returncode == 130 and lines[-1] == "numrec: interrupted"
        assert cached.is_file()
        if run == "first":
            assert lines[0].startswith("numrec serve: no model given: training the reference "
                                       "network on the bundled MNIST (2 epochs, seed 0)")
            assert re.fullmatch(r"numrec serve: epoch 2/2: test accuracy 9\d\.\d\d %, .*",
                                lines[2])
        else:
            assert not any("training" in line for line in lines)
        assert lines[-2].startswith(f"numrec serve: model ready ({cached}, ")
    _, (x_test, y_test) = mnist
    accuracy = np.mean(numrec.load(cached).predict_classes(x_test) == y_test)
    assert accuracy > 0.95


def test_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert serve.default_model_path() == str(tmp_path / "numrec" / "serve-model.npz")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert serve.cache_dir() == str(tmp_path / "home" / ".cache" / "numrec")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert serve.cache_dir() == str(tmp_path / "home" / ".cache" / "numrec")


def test_the_default_model_is_trained_once_then_read_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    trained = numrec.mnist_mlp(seed=3)
    calls, lines = [], []
    monkeypatch.setattr(serve, "train_default_model",
                        lambda report: calls.append(report) or trained)
    model, path = serve.load_default_model(lines.append)
    assert model is trained and len(calls) == 1
    assert path == str(tmp_path / "numrec" / "serve-model.npz")
    assert "training the reference network" in lines[0] and path in lines[0]

    again, _ = serve.load_default_model(lines.append)
    assert len(calls) == 1  # read back, not trained again
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    np.testing.assert_array_equal(again.predict(x), trained.predict(x))


def test_a_damaged_cached_model_is_trained_again(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "numrec").mkdir()
    (tmp_path / "numrec" / "serve-model.npz").write_bytes(b"not a model")
    monkeypatch.setattr(serve, "train_default_model",
                        lambda report: numrec.mnist_mlp(seed=1))
    lines = []
    model, path = serve.load_default_model(lines.append)
    assert lines[0].startswith(f"cannot load the cached model {path}")
    assert numrec.load(path).predict(np.zeros((1, 784), np.float32)).shape == (1, 10)


@pytest.mark.slow
def test_train_default_model_reports_each_epoch(mnist):
    """One epoch (of the default two) on the bundled MNIST."""
    lines = []
    model = serve.train_default_model(epochs=1, report=lines.append)
    assert len(lines) == 1 and re.fullmatch(r"epoch 1/1: test accuracy \d+\.\d\d %, .*",
                                             lines[0])
    _, (x_test, y_test) = mnist
    assert np.mean(model.predict_classes(x_test[:2000]) == y_test[:2000]) > 0.9


def test_the_latency_benchmark_runs():
    """benchmarks/bench_serve.py starts a server, measures and reports (times not checked)."""
    script = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench_serve.py")
    result = subprocess.run([sys.executable, script, "--requests", "3"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for text in ("png     ", "json    ", "kept alive", "new", "goal: a round trip under 20 ms",
                 "decode the PNG", "forward pass"):
        assert text in result.stdout
