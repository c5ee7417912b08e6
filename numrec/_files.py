"""Writing files atomically: a crash or Ctrl-C never leaves a half-written file.

What a write may replace: a regular file, or nothing.  A symbolic link is followed (the
file it points to is replaced and the link stays a link); a device, a pipe, a socket or a
directory is refused, so that saving to ``/dev/null`` as root cannot turn the device into
a regular file.
"""
import contextlib
import errno
import os
import stat
import tempfile

_SUFFIX = ".tmp"


def writable_target(path):
    """Return the file a write to ``path`` replaces, following symbolic links.

    Raises
    ------
    FileNotFoundError
        If the directory of the file does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    OSError
        If ``path`` exists and is neither a regular file nor a link to one (a device, a
        pipe, a socket); ``errno`` is ``EINVAL`` and the message says what it is.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"no such directory {directory}", path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", path)
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, f"is {_kind(mode)}, not a regular file (only regular "
                                    f"files are replaced)", path)
    return target


def _kind(mode):
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover


@contextlib.contextmanager
def atomic_writer(path):
    """Yield a binary file that replaces ``path`` only once it is completely written.

    The data goes to a temporary file in the same directory
    (``.NAME.PID.XXXXXXXX.tmp``), which is flushed to disk and then renamed over
    ``path``.  Temporary files that a killed process left for the same path are removed
    first.  On any exception, ``KeyboardInterrupt`` included, the temporary file is
    removed and ``path`` is left as it was; an ``OSError`` (a full disk, a read-only
    directory) names ``path``, not the temporary file.

    A file that is replaced keeps its permission bits; a new one gets the usual
    ``0o666`` less the umask.  ``path`` may be a symbolic link, which is followed; see
    :func:`writable_target` for what is refused.
    """
    target = writable_target(path)
    directory, name = os.path.split(target)
    prefix = f".{name}."
    _remove_abandoned(directory, prefix)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f"{prefix}{os.getpid()}.",
                                    suffix=_SUFFIX)
    except OSError as error:  # its filename is the temporary file's
        raise _naming(error, path, error.filename) from None
    try:
        try:
            with os.fdopen(fd, "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp, mode)  # mkstemp creates it readable by its owner only
            os.replace(temp, target)
        except OSError as error:
            raise _naming(error, path, temp) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _naming(error, path, temp):
    """``error`` about the file asked for, not the temporary one (errors without an
    errno, raised by the caller's own code, are kept as they are)."""
    if error.errno is None or error.filename not in (None, temp):
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno),
                       os.fspath(path))


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
