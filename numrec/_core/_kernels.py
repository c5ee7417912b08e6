"""Kernel levels: which hand-written float32 code the compiled modules run.

The levels, lowest first:

- ``"portable"``: compiled loops and BLAS, on any processor;
- ``"avx2"``: numrec's AVX2 + FMA kernels (dense products, inputs that are mostly
  zeros, the sigmoid);
- ``"avx512"``: the same kernels with AVX-512F, giving the AVX2 kernels' results bit for
  bit.

At import each module takes the highest level the processor runs (checked at run time,
so one build serves every x86-64 processor), or the level named by the environment
variable ``NUMREC_KERNELS`` (``avx512``, ``avx2``, ``portable`` or ``auto``) if it is
lower.  An unknown name, or a level the processor lacks, gives a :class:`RuntimeWarning`
naming it, and the automatic choice.
"""
import os
import warnings

#: The levels, lowest first.
LEVELS = ("portable", "avx2", "avx512")

#: The environment variable read at import.
ENVIRONMENT_VARIABLE = "NUMREC_KERNELS"

_AUTOMATIC = ("", "auto")
_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def default_level(available):
    """The level to start with, given the highest level the processor runs: that one, or
    the lower one that ``NUMREC_KERNELS`` asks for."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    requested = value.strip().lower()
    if requested in _AUTOMATIC:
        return available
    if requested not in LEVELS:
        _warn_once(f"{ENVIRONMENT_VARIABLE}={value!r} is not a kernel level (one of "
                   f"{', '.join(reversed(LEVELS))} or auto); choosing automatically: "
                   f"{available}")
        return available
    if LEVELS.index(requested) > LEVELS.index(available):
        _warn_once(f"{ENVIRONMENT_VARIABLE}={value!r}: this processor cannot run the "
                   f"{requested} kernels; running {available}")
        return available
    return requested


def check_level(level, available):
    """Return ``level`` as an index into :data:`LEVELS`, or raise ValueError naming it if
    it is not a level or the processor (whose highest level is ``available``) lacks it."""
    if level not in LEVELS:
        raise ValueError(f"unknown kernel level {level!r}: expected one of "
                         f"{', '.join(repr(name) for name in reversed(LEVELS))}")
    if LEVELS.index(level) > LEVELS.index(available):
        raise ValueError(f"this processor cannot run the {level!r} kernels (its highest "
                         f"level is {available!r})")
    return LEVELS.index(level)
