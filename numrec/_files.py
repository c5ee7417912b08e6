"""Writing files atomically: a crash or Ctrl-C never leaves a half-written file."""
import contextlib
import errno
import os
import tempfile


@contextlib.contextmanager
def atomic_writer(path):
    """Yield a binary file that replaces ``path`` only once it is completely written.

    The data goes to a temporary file in the same directory, which is flushed to disk and
    then renamed over ``path``.  On any exception, ``KeyboardInterrupt`` included, the
    temporary file is removed and ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"no such directory {directory}", path)
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                    suffix=".tmp")
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


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
