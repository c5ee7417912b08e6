"""What every fuzz target in this directory shares.

A target module defines ``seeds()`` (a few valid inputs, as bytes) and ``check(data)``,
which feeds ``data`` to one reader and raises ``AssertionError`` (or lets an undocumented
exception escape) if the reader does anything but return a valid result or raise its
documented error.  :func:`main` runs it: under atheris (coverage-guided) when atheris is
installed, otherwise -- or with ``--replay`` -- by replaying the corpus and then ``--runs``
random mutations of the seeds and of the corpus.  See README.rst.
"""
import argparse
import contextlib
import os
import random
import sys
import tempfile

try:
    import atheris
except ImportError:  # the plain replay still runs
    atheris = None

_WORKDIR = None
#: Values that break size arithmetic, written over random places of an input.
_INTERESTING = [b"\x00" * 4, b"\xff" * 4, b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
                b"\x00\x00\x00\x01", b"\xff" * 8, b"\x00\x00\x01\x00"]


def instrumented_imports():
    """Instrument numrec's Python code for atheris when the target runs as a fuzzer (numrec
    not imported yet and atheris installed); otherwise do nothing."""
    if atheris is None or "numrec" in sys.modules:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["numrec"])


def workfile(data, name="input"):
    """Write ``data`` to a file of this process's scratch directory; return its path."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = tempfile.mkdtemp(prefix="numrec-fuzz-")
    path = os.path.join(_WORKDIR, name)
    with open(path, "wb") as file:
        file.write(data)
    return path


def mutate(rng, data, others=()):
    """One random change of ``data``, of the kinds that break readers: bit flips, byte
    changes, boundary integers, insertions, deletions, truncation, splices."""
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 4))):
        kind = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 2:
            value = rng.choice(_INTERESTING)
            data[at:at + len(value)] = value
        elif kind == 3:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        elif kind == 4:
            del data[at:at + rng.randrange(1, 64)]
        elif kind == 5:
            del data[at:]
        elif kind == 6 and others:
            other = rng.choice(others)
            start = rng.randrange(len(other) + 1)
            data[at:] = other[start:start + rng.randrange(1, 256)]
        else:
            data[at:at] = data[at:at + rng.randrange(1, 64)] * rng.randrange(1, 8)
    return bytes(data)


def corpus(directories):
    """The files of the corpus directories, as bytes."""
    inputs = []
    for directory in directories:
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    with open(path, "rb") as file:
                        inputs.append(file.read())
    return inputs


def replay(check, seeds, runs, seed=0, directories=()):
    """Check the seeds, the corpus, and ``runs`` random mutations; return the count."""
    inputs = list(seeds) + corpus(directories)
    for data in inputs:
        check(data)
    rng = random.Random(seed)
    for _ in range(runs):
        data = mutate(rng, rng.choice(inputs), inputs)
        try:
            check(data)
        except BaseException:
            sys.stderr.write(f"failing input ({len(data)} bytes): {data[:200]!r}\n")
            raise
    return len(inputs) + runs


def main(check, seeds, name):
    """The command line of a fuzz target (see README.rst)."""
    parser = argparse.ArgumentParser(description=f"fuzz numrec's {name}")
    parser.add_argument("--replay", action="store_true",
                        help="replay the corpus and random mutations, even with atheris")
    parser.add_argument("--runs", type=int, default=1000,
                        help="random inputs after the corpus, in replay mode (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, in replay mode")
    parser.add_argument("corpus", nargs="*", help="corpus directories")
    args, fuzzer_args = parser.parse_known_args()
    if atheris is not None and not args.replay:
        def one_input(data):
            check(bytes(data))

        directories = [d for d in args.corpus if os.path.isdir(d)]
        for index, data in enumerate(seeds()):  # seed an empty corpus directory
            for directory in directories[:1]:
                path = os.path.join(directory, f"seed-{index}")
                if not os.path.exists(path):
                    with open(path, "wb") as file:
                        file.write(data)
        atheris.Setup([sys.argv[0], *fuzzer_args, *args.corpus], one_input)
        atheris.Fuzz()
    else:
        count = replay(check, seeds(), args.runs, args.seed, args.corpus)
        print(f"{name}: {count} inputs, no failure")
