"""Sphinx configuration for the numrec documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` or ``python -m sphinx -W -b
html docs docs/_build/html`` (needs ``pip install ".[docs]"``).  numrec must be installed:
the API reference is read from the docstrings of the installed (compiled) package, even
from the source root, where the uncompiled source folder would shadow it.
"""
import contextlib
import importlib
import io
import os
import sys

#: The folder that holds docs/ and numrec's sources.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_numrec():
    """Import the installed, compiled numrec.

    ``python -m sphinx`` puts the current directory first on ``sys.path``; run from the
    source root, that makes ``import numrec`` find the source folder, whose compiled
    modules are not built there.  Then the source root leaves ``sys.path`` and the
    installed package is imported instead.  (An editable install maps the source folder
    to its build and needs none of this.)
    """
    try:
        importlib.import_module("numrec._core._activations")
        return sys.modules["numrec"]
    except ImportError:
        pass
    for name in [name for name in sys.modules if name.split(".")[0] == "numrec"]:
        del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path
                   if os.path.abspath(entry or os.curdir) != SOURCE_ROOT]
    importlib.invalidate_caches()
    try:
        importlib.import_module("numrec._core._activations")
    except ImportError as exc:
        raise ImportError(
            f"the documentation is read from the installed numrec, which was not found "
            f"({exc}); install it first (pip install '.[docs]' in {SOURCE_ROOT}), then "
            f"run sphinx-build docs OUT or python -m sphinx docs OUT"
        ) from None
    return sys.modules["numrec"]


numrec = _import_numrec()

project = "numrec"
author = "the numrec developers"
copyright = "numrec developers"
release = numrec.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

exclude_patterns = ["_build", "_generated"]
templates_path = []
html_static_path = []
html_theme = "alabaster"
html_theme_options = {
    "description": "Small neural networks on the CPU, with compiled Cython kernels.",
    "fixed_sidebar": True,
}
html_title = f"numrec {release}"

# --- autodoc and numpydoc -------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"          # signatures come from the code, types from numpydoc
autodoc_preserve_defaults = True   # show defaults as written (np.float32, not <class ...>)
autoclass_content = "class"
numpydoc_show_class_members = False  # members are documented by autodoc's :members:
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# Cython's ``embedsignature`` puts the ``*`` of keyword-only parameters of a cdef class's
# ``__init__`` in the wrong place (``Dense(in_features, out_features, seed=None, *,
# dtype=...)``).  The true signatures (tests/test_docs.py checks Dense's):
SIGNATURE_FIXES = {
    "numrec.Dense": "(in_features, out_features, *, seed=None, dtype=np.float32)",
    "numrec.SGD": "(lr=0.5, momentum=0.0, *, nesterov=False, weight_decay=0.0)",
}


def _fix_signature(app, what, name, obj, options, signature, return_annotation):
    if name in SIGNATURE_FIXES:
        return SIGNATURE_FIXES[name], return_annotation
    if what == "method" and signature and signature.startswith("(self"):
        # Cython's embedded signatures of methods include ``self``: drop it.
        signature = "(" + signature[len("(self"):].lstrip(", ")
        return signature, return_annotation
    return None


# --- the command line's help, generated at each build for cli.rst ---------------------------
GENERATED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_generated")


def _write_cli_help():
    """Write ``numrec [COMMAND] --help`` into _generated/ for cli.rst to include."""
    from numrec.cli import main

    os.makedirs(GENERATED, exist_ok=True)
    old_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        for command in ("", "train", "evaluate", "predict", "export", "info"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main([command, "--help"] if command else ["--help"])
                except SystemExit:
                    pass
            name = f"help-{command or 'numrec'}.txt"
            with open(os.path.join(GENERATED, name), "w", encoding="utf-8") as file:
                file.write(out.getvalue())
    finally:
        if old_columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old_columns


_write_cli_help()


def setup(app):
    # Before numpydoc's own handler (priority 500), whose result would win otherwise.
    app.connect("autodoc-process-signature", _fix_signature, priority=400)


# --- doctest (``sphinx-build -b doctest docs docs/_build/doctest``) --------------------------
doctest_global_setup = """
import numpy as np
import numrec
"""
