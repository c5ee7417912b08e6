"""Round trip of ``POST /predict`` on ``numrec serve``, against the goal of 20 ms.

Starts ``numrec serve MODEL --port 0`` in its own process, then sends ``--requests``
requests of each kind from this one over the loopback interface and prints the median,
90th percentile and fastest round trip:

``png``
    a 280 × 280 PNG of a digit drawn dark on white, as the page's canvas sends it;
``json``
    ``{"pixels": ...}`` with one of MNIST's 28 × 28 test digits;

each over one kept-alive connection (as a browser's ``fetch`` does) and over a new
connection per request (as ``curl`` does).  Then the server's own steps, timed in this
process: decoding the PNG, centring the digit (:func:`numrec.images.to_mnist`) and the
network's forward pass.

The network's weights do not change the time: without ``--model`` an untrained
reference network (784-256-10) stands in.  A script that prints figures, not a test.

    python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --model numrec-mnist.npz --requests 500
"""
import argparse
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import numrec
from numrec import serve
from numrec.datasets import load_mnist
from numrec.images import to_mnist

GOAL_MS = 20.0


def bodies():
    """The two request bodies: a canvas-like PNG and JSON pixels, from MNIST test digits."""
    _, (x_test, _) = load_mnist(dtype=np.uint8, flatten=False)
    canvas = Image.fromarray(255 - x_test[0]).resize((280, 280), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return {
        "png": (buffer.getvalue(), "image/png"),
        "json": (json.dumps({"pixels": x_test[1].tolist()}).encode(), "application/json"),
    }


def start_server(model_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "numrec", "serve", model_path, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        process.kill()
        raise SystemExit(f"numrec serve did not start: {line}{process.stderr.read()}")
    port = int(match.group(1))
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                connection.close()
                return process, port
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit("numrec serve did not become ready")


def round_trips(port, body, kind, count, *, keep_alive):
    """Seconds of ``count`` round trips, after a few unmeasured ones."""
    times = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for index in range(count + 10):
        if not keep_alive:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        start = time.perf_counter()
        connection.request("POST", "/predict", body, {"Content-Type": kind})
        response = connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise SystemExit(f"the server answered {response.status}: {answer[:200]!r}")
        if index >= 10:
            times.append(elapsed)
        if not keep_alive:
            connection.close()
    connection.close()
    return times


def server_steps(model, png, count):
    """Median seconds of each step the server takes for a PNG, timed in this process."""
    recogniser = serve.Recogniser(model)
    steps = {
        "decode the PNG": lambda: serve.decode_png(png),
        "centre (to_mnist)": lambda: to_mnist(grey),
        "forward pass": lambda: model.predict_proba(row),
        "all but decoding": lambda: json.dumps(recogniser.recognise(grey)).encode(),
    }
    grey = serve.decode_png(png)
    row = to_mnist(grey).reshape(1, 784).astype(model.dtype)
    medians = {}
    for name, step in steps.items():
        times = []
        for _ in range(count):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
    return medians


def _ms(seconds):
    return f"{1000 * seconds:7.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved model (default: an untrained reference "
                                        "network)")
    parser.add_argument("--requests", type=int, default=200,
                        help="measured requests of each kind (default: 200)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        model_path = args.model
        if model_path is None:
            model_path = os.path.join(scratch, "reference.npz")
            numrec.mnist_mlp(seed=0).save(model_path)
        model = numrec.load(model_path)
        requests = bodies()
        process, port = start_server(model_path)
        try:
            rows = []
            for name, (body, kind) in requests.items():
                for keep_alive in (True, False):
                    times = round_trips(port, body, kind, args.requests,
                                        keep_alive=keep_alive)
                    rows.append((name, len(body), "kept alive" if keep_alive else "new",
                                 times))
        finally:
            process.terminate()
            process.communicate(timeout=20)

    load = os.getloadavg()
    print(f"numrec serve, POST /predict on the loopback interface: {args.requests} "
          f"requests of each kind")
    print(f"model: {args.model or 'untrained reference network 784-256-10'}; "
          f"{os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print("body   bytes  connection   median ms   p90 ms   fastest ms")
    for name, size, connection, times in rows:
        p90 = float(np.percentile(times, 90))
        print(f"{name:<5} {size:>6}  {connection:<10}  {_ms(statistics.median(times))}   "
              f"{_ms(p90)}  {_ms(min(times))}")
    worst = max(statistics.median(times) for *_, times in rows)
    verdict = "met" if 1000 * worst < GOAL_MS else "NOT met"
    print(f"\ngoal: a round trip under {GOAL_MS:g} ms: {verdict} (slowest median "
          f"{1000 * worst:.2f} ms)")

    print("\nthe server's steps for the PNG (median, in this process):")
    for name, seconds in server_steps(model, requests["png"][0], args.requests).items():
        print(f"  {name:<18} {_ms(seconds)} ms")


if __name__ == "__main__":
    main()
