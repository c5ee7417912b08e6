"""``numrec info``: versions, kernels, threads and BLAS, checked against the system."""
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy

import numrec
from numrec import cli
from numrec._core import _activations, _layers
from numrec import _sysinfo
from numrec._sysinfo import KERNEL_PATHS


def run_info(*args):
    # Not from the source root, whose uncompiled numrec/ would shadow the installed one.
    result = subprocess.run([sys.executable, "-m", "numrec", "info", *args],
                            capture_output=True, text=True, timeout=120,
                            cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.fixture(scope="module")
def info():
    return json.loads(run_info("--json"))


def cpuinfo_flags():
    """The processor's flags from /proc/cpuinfo (Linux, x86-64), else None."""
    path = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_versions(info):
    assert info["numrec"] == numrec.__version__
    assert info["numpy"] == np.__version__ and info["scipy"] == scipy.__version__
    assert info["python"].startswith(platform.python_version())
    assert info["machine"] == platform.machine()


def test_kernels_follow_the_processor(info):
    flags = cpuinfo_flags()
    if flags is None:
        assert info["kernels"] == "portable"
        return
    has_avx2_fma = {"avx2", "fma"} <= flags
    has_avx512 = has_avx2_fma and {"avx512f", "popcnt"} <= flags
    expected = "avx512" if has_avx512 else "avx2-fma" if has_avx2_fma else "portable"
    if os.environ.get("NUMREC_KERNELS"):
        pytest.skip("NUMREC_KERNELS pins the level")
    assert info["kernels"] == expected
    assert info["kernel_detail"] == {"dense_float32": expected, "sparse_float32": expected,
                                     "sigmoid_float32": expected}
    assert info["cpu_features"]["avx2"] == ("avx2" in flags)
    assert info["cpu_features"]["avx512f"] == ("avx512f" in flags)


def test_threads(info):
    expected = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count())
    assert info["threads"] == expected
    assert info["cpu_count"] == os.cpu_count()


def test_blas_is_the_one_numrec_calls(info):
    # numrec's layers call scipy.linalg.cython_blas: scipy's BLAS must be listed, with
    # a library file that exists.
    assert info["blas"], info
    for library in info["blas"]:
        assert Path(library["filepath"]).is_file()
        assert library["num_threads"] >= 1
    assert any("scipy" in library["filepath"] for library in info["blas"])


def test_text_form(info):
    lines = run_info().splitlines()
    fields = {}
    for line in lines:
        label, value = line.split(":", 1)
        fields.setdefault(label, []).append(value.strip())
    assert fields["numrec"] == [numrec.__version__]
    assert fields["numpy"] == [np.__version__]
    assert fields["threads"][0].startswith(f"{info['threads']} for training")
    assert len(fields["BLAS"]) == len(info["blas"])
    expected = {"avx512": "AVX-512 for dense float32 products, sparse inputs, sigmoid",
                "avx2-fma": "AVX2 + FMA for dense float32 products, sparse inputs, sigmoid",
                "portable": "portable"}[info["kernels"]]
    assert fields["kernels"][0].startswith(expected)


def test_switched_off_kernels_report_portable(capsys):
    dense, sigmoid = _layers._simd_kernels(False), _activations._vector_sigmoid_kernel(False)
    try:
        assert cli.main(["info", "--json"]) == 0
    finally:
        _layers._simd_kernels(dense)
        _activations._vector_sigmoid_kernel(sigmoid)
    report = json.loads(capsys.readouterr().out)
    assert report["kernels"] == "portable" and report["kernels"] in KERNEL_PATHS
    assert report["kernel_detail"] == {"dense_float32": "portable",
                                       "sparse_float32": "portable",
                                       "sigmoid_float32": "portable"}


def test_a_lowered_level_is_reported(capsys):
    """At the avx2 level on a processor with AVX-512, the report says both."""
    try:
        previous = _layers._kernel_level("avx2")
    except ValueError:
        pytest.skip("the processor lacks AVX2 and FMA")
    try:
        report = _sysinfo.collect()
        text = "\n".join(_sysinfo.format_text(report))
    finally:
        _layers._kernel_level(previous)
    assert report["kernels"] == "avx2-fma"
    assert set(report["kernel_detail"].values()) == {"avx2-fma"}
    assert "kernels:" in text and "AVX2 + FMA for dense float32 products" in text
    assert ("lowered the level" in text) == bool(report["cpu_features"].get("avx512f"))


def test_bad_option_is_one_line():
    result = subprocess.run([sys.executable, "-m", "numrec", "info", "--jsn"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
