"""What ``numrec info`` reports: versions, the kernels this processor runs, threads, BLAS.

The kernel level is the one numrec's compiled code chose when it was imported: the
float32 dense-layer products, the sparse-input products and the vector sigmoid run
hand-written AVX-512 code where the processor has AVX-512F, AVX2 + FMA code where it has
those (the two give the same bits), and portable code (compiled loops and BLAS)
everywhere else, ARM included.  The processor is checked at run time with
``__builtin_cpu_supports``, so one build serves every x86-64 processor; the environment
variable ``NUMREC_KERNELS`` pins a lower level.
"""
import os
import platform

#: The kernel levels :func:`collect` reports under ``"kernels"``, highest first.
KERNEL_PATHS = ("avx512", "avx2-fma", "portable")

#: The kernels each level covers, by their key in ``"kernel_detail"``.
KERNEL_KINDS = {"dense_float32": "dense float32 products", "sparse_float32": "sparse inputs",
                "sigmoid_float32": "sigmoid"}

_PATH_OF_LEVEL = {"avx512": "avx512", "avx2": "avx2-fma", "portable": "portable"}

#: Processor features worth naming in a bug report (numpy's names).
_FEATURES = ("AVX512F", "AVX2", "FMA3", "NEON", "ASIMD")


def collect():
    """Return the report as a JSON-serialisable dict."""
    import numpy as np
    import scipy

    from numrec import __version__
    from numrec._core import _activations, _layers
    from numrec.model import _default_threads

    dense = _PATH_OF_LEVEL[_layers._kernel_level()]
    sigmoid = _PATH_OF_LEVEL[_activations._sigmoid_kernel_level()]
    return {
        "numrec": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_features": _cpu_features(),
        "kernels": dense,
        "kernel_detail": {"dense_float32": dense, "sparse_float32": dense,
                          "sigmoid_float32": sigmoid},
        "threads": _default_threads(),
        "cpu_count": os.cpu_count(),
        "blas": _libraries("blas"),
        "openmp": _libraries("openmp"),
    }


def _cpu_features():
    """The processor features of :data:`_FEATURES` that numpy detects (True/False), by
    their lower-case names; empty when numpy does not say."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return {}
    return {name.lower(): bool(features[name]) for name in _FEATURES if name in features}


def _libraries(user_api):
    """The loaded libraries of ``user_api`` ("blas" or "openmp"), as threadpoolctl sees
    them."""
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture",
            "filepath")
    return [{key: info.get(key) for key in keys}
            for info in threadpool_info() if info.get("user_api") == user_api]


def format_text(info):
    """The report of :func:`collect` as lines of text."""
    features = info["cpu_features"]
    shown = ", ".join(f"{_FEATURE_LABELS.get(name, name)} {'yes' if on else 'no'}"
                      for name, on in features.items()
                      if on or name in ("avx512f", "avx2", "fma3")) or "unknown"
    kernels = _describe_kernels(info["kernel_detail"])
    if features.get("avx512f") and info["kernels"] != "avx512":
        kernels += "; the processor has AVX-512F (NUMREC_KERNELS or a switch lowered the level)"
    rows = [
        ("numrec", info["numrec"]),
        ("python", info["python"]),
        ("platform", info["platform"]),
        ("numpy", info["numpy"]),
        ("scipy", info["scipy"]),
        ("processor", f"{info['machine']}: {shown}"),
        ("kernels", kernels),
        ("threads", f"{info['threads']} for training (of {info['cpu_count']} cores; "
                    f"numrec train --threads N changes it)"),
    ]
    for kind, label in (("blas", "BLAS"), ("openmp", "OpenMP")):
        for library in info[kind] or [None]:
            rows.append((label, _describe_library(library) if library else "none loaded"))
    width = max(len(label) for label, _ in rows)
    return [f"{label + ':':<{width + 1}}  {value}" for label, value in rows]


_PATH_LABELS = {"avx512": "AVX-512", "avx2-fma": "AVX2 + FMA",
                "portable": "portable (compiled loops and BLAS)"}


def _describe_kernels(detail):
    """Which level runs which kernels, e.g. "AVX-512 (dense float32 products, sparse
    inputs, sigmoid)"; AVX-512 and AVX2 + FMA give the same bits."""
    by_path = {}
    for key, path in detail.items():
        by_path.setdefault(path, []).append(KERNEL_KINDS[key])
    return "; ".join(f"{_PATH_LABELS[path]} for {', '.join(kinds)}"
                     for path, kinds in by_path.items())


_FEATURE_LABELS = {"avx512f": "AVX-512F", "avx2": "AVX2", "fma3": "FMA", "neon": "NEON",
                   "asimd": "ASIMD"}


def _describe_library(library):
    name = os.path.basename(library["filepath"] or "?")
    if library["internal_api"] == "openmp":
        return f"{name}, {library['num_threads']} threads"
    details = [f"{library['num_threads']} threads"]
    if library.get("threading_layer"):
        details.append(f"threading layer {library['threading_layer']}")
    if library.get("architecture"):
        details.append(f"tuned for {library['architecture']}")
    return (f"{library['internal_api']} {library['version'] or '(version unknown)'}"
            f"{_owner(library['filepath'])}, {', '.join(details)} ({name})")


def _owner(path):
    """Whose copy of the library it is: numrec's layers call scipy's BLAS."""
    parts = os.path.normpath(path or "").split(os.sep)
    if any(part.startswith("scipy") for part in parts):
        return " from scipy (numrec's layers)"
    if any(part.startswith("numpy") for part in parts):
        return " from numpy"
    return ""
