"""The ``numrec`` command's entry point.

Importing numrec (NumPy, SciPy, the compiled kernels) takes a moment; Ctrl-C or SIGTERM
during it ends the command with one line, as it does later, instead of a traceback.
This module imports nothing of numrec's until it has taken charge of the signals.
"""
import signal
import sys


class _Stopped(BaseException):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise _Stopped(signum)


def main():
    """Import :mod:`numrec.cli` and run its ``main``; returns the exit status."""
    try:
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            from numrec.cli import main as run
        finally:
            signal.signal(signal.SIGTERM, previous)
    except (KeyboardInterrupt, _Stopped) as exc:
        terminated = isinstance(exc, _Stopped)
        print(f"numrec: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
