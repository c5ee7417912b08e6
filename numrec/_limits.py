"""Limits on the memory a file may make numrec allocate, and how a user raises them.

Each reader checks the sizes a file declares against a limit before allocating
anything.  A limit is the reader's ``max_bytes`` (or ``max_pixels``) argument if one is
given, else the environment variable named below, else the default.
"""
import os

#: Largest total size of a model file's parameters, in bytes (256 MiB: 67 million float32
#: parameters, 80 times the reference network); environment variable
#: ``NUMREC_MAX_MODEL_BYTES``.
MAX_MODEL_BYTES = 1 << 28
#: Largest gzip-compressed IDX data, in bytes once decompressed (1 GiB; MNIST's training
#: images take 47 MB); environment variable ``NUMREC_MAX_DATA_BYTES``.
MAX_DATA_BYTES = 1 << 30
#: Largest picture read for ``numrec predict``, in pixels (50 million: a 48-megapixel
#: photograph passes); environment variable ``NUMREC_MAX_IMAGE_PIXELS``.
MAX_IMAGE_PIXELS = 50_000_000

_VARIABLES = {"MAX_MODEL_BYTES": "NUMREC_MAX_MODEL_BYTES",
              "MAX_DATA_BYTES": "NUMREC_MAX_DATA_BYTES",
              "MAX_IMAGE_PIXELS": "NUMREC_MAX_IMAGE_PIXELS"}


def limit(name, given=None):
    """The limit ``name`` (``"MAX_MODEL_BYTES"``, ...): ``given`` if not None, else the
    environment variable's value, else the default.

    Raises
    ------
    ValueError
        If ``given`` or the environment variable is not a positive whole number.
    """
    variable = _VARIABLES[name]
    if given is None:
        text = os.environ.get(variable, "").strip()
        if not text:
            return globals()[name]
        try:
            given = int(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"the environment variable {variable} must be a whole number, "
                             f"got {text[:40]!r}") from None
        where = f"the environment variable {variable}"
    else:
        where = f"max_{'pixels' if name.endswith('PIXELS') else 'bytes'}"
    if isinstance(given, bool) or not isinstance(given, int) and not hasattr(given,
                                                                              "__index__"):
        raise TypeError(f"{where} must be a whole number, got {type(given).__name__}")
    given = int(given)
    if given < 1:
        raise ValueError(f"{where} must be at least 1, got {given}")
    return given


def how_to_raise(name, what="max_bytes"):
    """The end of an error message: how to raise the limit ``name``."""
    return f"pass {what}= or set the environment variable {_VARIABLES[name]} to raise it"
