"""Writing files atomically: a crash or Ctrl-C never leaves a half-written file."""
import contextlib
import errno
import os
import tempfile


@contextlib.contextmanager
def atomic_writer(path):
    """Yield a binary file that replaces ``path`` only once it is completely written.

    The data goes to a temporary file in the same directory
    (``.NAME.PID.XXXXXXXX.tmp``), which is flushed to disk and then renamed over
    ``path``.  Temporary files that a killed process left for the same path are removed
    first.  On any exception, ``KeyboardInterrupt`` included, the temporary file is
    removed and ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"no such directory {directory}", path)
    prefix = f".{os.path.basename(path)}."
    _remove_abandoned(directory, prefix)
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f"{prefix}{os.getpid()}.",
                                    suffix=_SUFFIX)
    except OSError as error:  # name the file asked for, not the temporary one
        raise type(error)(error.errno, error.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp creates it readable by its owner only
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


_SUFFIX = ".tmp"


def _remove_abandoned(directory, prefix):
    """Remove the temporary files of earlier writes to the same path whose process is
    gone (killed mid-write): ``.NAME.PID.XXXXXXXX.tmp`` with no process PID.  A write
    in progress in a live process is left alone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_SUFFIX)):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
