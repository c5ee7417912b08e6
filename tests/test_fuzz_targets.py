"""The fuzz targets of tests/fuzz run briefly: their seeds and a few hundred mutations.

Each target asserts that its reader gives a valid result or its documented error, as one
line naming the file (see tests/fuzz/README.rst); NumPy's RuntimeWarnings count as
failures.
"""
import importlib.util
import warnings
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent / "fuzz"
RUNS = 300


def _target(name):
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["fuzz_idx", "fuzz_model", "fuzz_seed", "fuzz_image"])
def test_fuzz_target_survives_its_seeds_and_mutations(name):
    target = _target(name)
    harness = _target("_harness")
    seeds = target.seeds()
    assert len(seeds) >= 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        count = harness.replay(target.check, seeds, RUNS, seed=20)
    assert count == len(seeds) + RUNS


def test_the_seeds_are_valid_inputs():
    """Each target's seeds are read successfully (else the mutations start from
    nothing)."""
    from numrec import load
    from numrec.datasets import read_idx
    from numrec.images import load_digit
    from numrec.seed_format import read_seed_model

    harness = _target("_harness")
    for name, read in [("fuzz_idx", read_idx), ("fuzz_model", load),
                       ("fuzz_seed", read_seed_model), ("fuzz_image", load_digit)]:
        for data in _target(name).seeds():
            read(harness.workfile(data, "seed-check"))


def test_mutations_change_inputs_and_stay_reproducible():
    import random
    harness = _target("_harness")
    data = bytes(range(64))
    first = [harness.mutate(random.Random(5), data) for _ in range(3)]
    assert first == [harness.mutate(random.Random(5), data) for _ in range(3)]
    changed = {harness.mutate(random.Random(seed), data) for seed in range(50)}
    assert len(changed) > 40
