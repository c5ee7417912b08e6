"""Hostile files and hard stops: nothing allocates blindly, nothing is left behind.

Property-based fuzzing of the IDX reader and the model loader under a memory limit
(tests/hostile_inputs.py), the limits of each reader, kill -9 during saves, what saving
may replace, and signals during ``numrec train``.
"""
import errno
import gzip
import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import numrec
from numrec import ModelFileError, cli
from numrec.datasets import DataFormatError, load_mnist, read_idx, write_idx
from numrec.images import ImageError, load_digit

HERE = Path(__file__).parent


def small_model(seed=0):
    return numrec.Sequential([numrec.Dense(6, 5, seed=seed), numrec.LeakyReLU(0.2),
                              numrec.Dense(5, 3, seed=seed + 1), numrec.Sigmoid()])


def assert_same_parameters(a, b):
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(x, y)


# --- property-based fuzzing under a memory limit ------------------------------------------

@pytest.mark.parametrize("reader, properties", [("idx", 4), ("model", 2)])
def test_readers_under_property_based_fuzzing_with_a_memory_limit(reader, properties):
    """Random bytes, truncations, header mutations, shape lies, zip and gzip bombs: only
    the documented errors, within 400 MiB more address space than start-up took (a
    reader allocating what a header claims fails with MemoryError), and no hang."""
    pytest.importorskip("hypothesis")
    result = subprocess.run([sys.executable, str(HERE / "hostile_inputs.py"), reader,
                             "--examples", "120"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.count("examples passed") == properties, result.stdout


# --- model files ---------------------------------------------------------------------------

def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info.filename) for info in archive.infolist()}


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy_header(shape):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return out.getvalue()


def _architecture(*components):
    out = io.BytesIO()
    text = json.dumps({"format": "numrec-model", "version": 1, "dtype": "float32",
                       "components": list(components)})
    np.save(out, np.frombuffer(text.encode(), dtype=np.uint8))
    return out.getvalue()


def _dense(n_in, n_out):
    return {"type": "Dense", "config": {"in_features": n_in, "out_features": n_out,
                                        "dtype": "float32"}}


def test_deflated_model_files_load_like_stored_ones(tmp_path):
    model = small_model()
    model.save(tmp_path / "stored.npz")
    deflated = _write_zip(tmp_path / "deflated.npz", _members(tmp_path / "stored.npz"),
                          zipfile.ZIP_DEFLATED)
    assert_same_parameters(numrec.load(deflated), model)


def test_a_deflated_bomb_is_refused_by_the_limit_before_reading(tmp_path):
    """A header of Dense(784, 2000) and 6 MB of zeros deflated to a few kilobytes: the
    declared size is checked against the limit before any entry is decompressed."""
    path = _write_zip(tmp_path / "bomb.npz", {
        "architecture.npy": _architecture(_dense(784, 2000)),
        "param_0.npy": _npy_header((2000, 784)) + bytes(2000 * 784 * 4),
        "param_1.npy": _npy_header((2000,)) + bytes(2000 * 4)}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 50_000
    with pytest.raises(ModelFileError, match=r"parameters take 6280000 bytes, more than the "
                                             r"limit of 1000000 \(pass max_bytes="):
        numrec.load(path, max_bytes=1_000_000)
    assert numrec.load(path).n_inputs == 784   # within the default limit: zeros load


def test_the_model_limit_can_be_set_by_the_environment(tmp_path, monkeypatch):
    small_model().save(tmp_path / "m.npz")     # 6*5+5+5*3+3 = 53 parameters, 212 bytes
    monkeypatch.setenv("NUMREC_MAX_MODEL_BYTES", "200")
    with pytest.raises(ModelFileError, match="212 bytes, more than the limit of 200 .*"
                                             "NUMREC_MAX_MODEL_BYTES"):
        numrec.load(tmp_path / "m.npz")
    monkeypatch.setenv("NUMREC_MAX_MODEL_BYTES", "212")
    assert_same_parameters(numrec.load(tmp_path / "m.npz"), small_model())
    monkeypatch.setenv("NUMREC_MAX_MODEL_BYTES", "lots")
    with pytest.raises(ValueError, match="NUMREC_MAX_MODEL_BYTES must be a whole number"):
        numrec.load(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="max_bytes must be at least 1"):
        numrec.load(tmp_path / "m.npz", max_bytes=0)


def _patch_central_directory(path, name, offset, fmt, value):
    """Overwrite a field of ``name``'s central directory record."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02" + b"")
    while True:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_length] == name.encode():
            struct.pack_into(fmt, data, at + offset, value)
            path.write_bytes(bytes(data))
            return
        at = data.index(b"PK\x01\x02", at + 4)


def test_a_deflated_entry_announcing_more_than_deflate_can_hold_is_refused(tmp_path):
    small_model().save(tmp_path / "m.npz")
    path = _write_zip(tmp_path / "lie.npz", _members(tmp_path / "m.npz"), zipfile.ZIP_DEFLATED)
    _patch_central_directory(path, "param_0.npy", 24, "<I", 2**31)   # uncompressed size
    with pytest.raises(ModelFileError, match=r"entry 'param_0.npy' announces 2147483648 bytes, "
                                             r"more than its \d+ compressed bytes can hold"):
        numrec.load(path)


def test_encrypted_and_oddly_compressed_entries_are_refused_before_reading(tmp_path):
    small_model().save(tmp_path / "m.npz")
    encrypted = _write_zip(tmp_path / "encrypted.npz", _members(tmp_path / "m.npz"))
    _patch_central_directory(encrypted, "architecture.npy", 8, "<H", 1)   # flag bit 0
    with pytest.raises(ModelFileError, match="entry 'architecture.npy' is encrypted"):
        numrec.load(encrypted)
    bzipped = _write_zip(tmp_path / "bzip2.npz", _members(tmp_path / "m.npz"),
                         zipfile.ZIP_BZIP2)
    with pytest.raises(ModelFileError, match="compressed with zip method 12; model files "
                                             "hold stored or deflated entries"):
        numrec.load(bzipped)


def test_fifty_thousand_unexpected_entries_give_a_short_message(tmp_path):
    small_model().save(tmp_path / "m.npz")
    path = tmp_path / "crowded.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in _members(tmp_path / "m.npz").items():
            archive.writestr(name, data)
        for index in range(50_000):
            archive.writestr(f"junk_{index}.npy", b"")
    with pytest.raises(ModelFileError) as caught:
        numrec.load(path)
    message = str(caught.value)
    assert len(message) < 300, message
    assert message.endswith("(unexpected junk_0, junk_1, junk_2, junk_3, junk_4 and "
                            "49995 more)")


def test_values_read_from_a_file_are_cut_short_in_messages(tmp_path):
    alpha = int("9" * 401)
    path = _write_zip(tmp_path / "alpha.npz", {"architecture.npy": _architecture(
        _dense(2, 2), {"type": "LeakyReLU", "config": {"alpha": alpha}})})
    with pytest.raises(ModelFileError, match=r"invalid alpha: 9{37}\.\.\.$") as caught:
        numrec.load(path)
    assert len(str(caught.value)) < 200


def test_a_header_of_a_huge_layer_without_data_asks_for_no_memory(tmp_path):
    """Dense(100000, 100000) announced, nothing stored: refused from the architecture
    alone (the parameters' 40 GB exceed the limit), before any entry is read."""
    path = _write_zip(tmp_path / "huge.npz", {
        "architecture.npy": _architecture(_dense(100000, 100000))})
    with pytest.raises(ModelFileError, match="40000400000 bytes, more than the limit"):
        numrec.load(path)


# --- IDX -----------------------------------------------------------------------------------

def test_many_empty_gzip_members_are_read(tmp_path):
    """200,000 empty members (4 MB) before the data: read in time proportional to the
    file (formerly each member copied the rest of the file: quadratic)."""
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    body = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28) + images.tobytes()
    path = tmp_path / "members.gz"
    path.write_bytes(gzip.compress(b"", mtime=0) * 200_000 + gzip.compress(body, mtime=0))
    np.testing.assert_array_equal(read_idx(path), images)


def test_gzip_data_beyond_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    images = np.zeros((3000, 28, 28), dtype=np.uint8)          # 2.35 MB, a few KB gzipped
    write_idx(tmp_path / "images.gz", images)
    with pytest.raises(DataFormatError, match=r"announces 2352000 bytes of data, more than "
                                              r"the limit of 1000000 \(pass max_bytes="):
        read_idx(tmp_path / "images.gz", max_bytes=1_000_000)
    monkeypatch.setenv("NUMREC_MAX_DATA_BYTES", "2000000")
    with pytest.raises(DataFormatError, match="NUMREC_MAX_DATA_BYTES"):
        read_idx(tmp_path / "images.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "images.gz", max_bytes=2352000), images)


def test_mnist_image_shapes_are_checked_from_the_header(tmp_path, monkeypatch):
    """A file announcing (n, 100, 100) images fails on its header, before its data is
    read: the data here is missing altogether."""
    for name, array in [("train-labels-idx1-ubyte", np.zeros(2, np.uint8)),
                        ("t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8)),
                        ("t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))]:
        write_idx(tmp_path / name, array)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 5000, 100, 100)))
    with pytest.raises(DataFormatError, match=r"images must be a 3-D array of shape "
                                              r"\(n, 28, 28\), found .* \(5000, 100, 100\)"):
        load_mnist(tmp_path)


# --- pictures ------------------------------------------------------------------------------

def test_pictures_beyond_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image
    Image.new("L", (200, 100), 255).save(tmp_path / "wide.png")
    with pytest.raises(ImageError, match=r"wide.png is 200 x 100 pixels, more than the limit "
                                         r"of 10000 \(pass max_pixels="):
        load_digit(tmp_path / "wide.png", max_pixels=10_000)
    monkeypatch.setenv("NUMREC_MAX_IMAGE_PIXELS", "19999")
    with pytest.raises(ImageError, match="NUMREC_MAX_IMAGE_PIXELS"):
        load_digit(tmp_path / "wide.png")


def test_a_large_picture_is_reduced_first_and_gives_the_small_ones_result(tmp_path):
    """An MNIST digit drawn 2800 pixels wide (reduced to 934 before the float
    conversion) gives what the same digit 280 pixels wide gives."""
    from PIL import Image
    (x, _), _ = load_mnist(dtype=np.uint8, flatten=False)
    for index in range(2):
        digit = Image.fromarray(255 - x[index])
        digit.resize((280, 280), Image.Resampling.NEAREST).save(tmp_path / "small.png")
        digit.resize((2800, 2800), Image.Resampling.NEAREST).save(tmp_path / "large.png")
        small, large = load_digit(tmp_path / "small.png"), load_digit(tmp_path / "large.png")
        assert np.abs(small - large).max() < 0.05
        assert np.abs(small - x[index] / 255).mean() < 0.1   # and both are the digit


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_a_float_picture_holding_inf_or_nan_is_an_image_error_without_warnings(tmp_path,
                                                                              value):
    from PIL import Image
    pixels = np.zeros((40, 40), dtype=np.float32)
    pixels[10:30, 18:22] = value
    Image.fromarray(pixels, mode="F").save(tmp_path / "float.tiff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="float.tiff holds NaN or infinite values"):
            load_digit(tmp_path / "float.tiff")


# --- saving --------------------------------------------------------------------------------

def test_a_save_never_replaces_a_pipe_or_a_device(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="is a named pipe, not a regular file") as caught:
        small_model().save(tmp_path / "pipe")
    assert caught.value.errno == errno.EINVAL and caught.value.filename == str(
        tmp_path / "pipe")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    if os.geteuid() == 0:   # a copy of /dev/null: only root may make device nodes
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        with pytest.raises(OSError, match="is a character device"):
            small_model().save(tmp_path / "null")
        assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["pipe"] + (["null"] if os.geteuid() == 0 else []))


def test_a_save_through_a_symbolic_link_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "models").mkdir()
    small_model(seed=0).save(tmp_path / "models" / "real.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "models" / "real.npz")
    small_model(seed=5).save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()
    assert_same_parameters(numrec.load(tmp_path / "models" / "real.npz"), small_model(seed=5))
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "models" / "new.npz")
    small_model(seed=6).save(tmp_path / "dangling.npz")
    assert (tmp_path / "dangling.npz").is_symlink()
    assert_same_parameters(numrec.load(tmp_path / "models" / "new.npz"), small_model(seed=6))


@pytest.mark.parametrize("name", ["m.npz", "m.txt", "data.idx"])
def test_a_replaced_file_keeps_its_permission_bits(tmp_path, name):
    path = tmp_path / name

    def save():
        if name.endswith(".idx"):
            write_idx(path, np.zeros(3, np.uint8))
        else:
            numrec.Sequential([numrec.Dense(3, 2, seed=0)]).save(path)

    save()
    for mode in (0o600, 0o640):
        path.chmod(mode)
        save()
        assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    small_model(seed=0).save(tmp_path / "m.npz")
    before = (tmp_path / "m.npz").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        small_model(seed=1).save(tmp_path / "m.npz")
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "m.npz")
    assert (tmp_path / "m.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_a_read_only_directory_names_the_file_not_the_temporary_one(tmp_path, monkeypatch):
    import tempfile

    def refused(dir, prefix, suffix):
        name = os.path.join(dir, f"{prefix}x1y2z3{suffix}")
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as caught:
        small_model().save(tmp_path / "m.npz")
    assert caught.value.filename == str(tmp_path / "m.npz")
    assert ".tmp" not in str(caught.value)


_KILLED_SAVES = r"""
import glob, json, os, random, signal, sys, time
import numpy as np
import numrec

path, trials = sys.argv[1], int(sys.argv[2])
models = [numrec.Sequential([numrec.Dense(784, 512, seed=s), numrec.LeakyReLU(0.2),
                             numrec.Dense(512, 10, seed=s + 1)]) for s in (0, 10)]
models[0].save(path)
temporaries = os.path.join(os.path.dirname(path), ".*.tmp")
rng = random.Random(0)
results = []
for trial in range(trials):
    child = os.fork()
    if child == 0:   # saves the two models in turn until killed
        for i in range(1, 10**9):
            models[i % 2].save(path)
    time.sleep(rng.uniform(0.0, 0.04))
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    left = len(glob.glob(temporaries))
    loaded = numrec.load(path)
    same = [all(np.array_equal(a, b) for a, b in zip(loaded.parameters(), m.parameters()))
            for m in models]
    models[trial % 2].save(path)             # the next save
    results.append({"left": left, "model": same.index(True) if any(same) else None,
                    "after": len(glob.glob(temporaries))})
print(json.dumps(results))
"""


def test_kill_9_during_saves_leaves_the_old_or_the_new_model(tmp_path):
    """Saves killed with SIGKILL at random moments: the file is always one of the two
    models saved in turn, and no temporary file survives the next save."""
    result = subprocess.run([sys.executable, "-c", _KILLED_SAVES, str(tmp_path / "m.npz"),
                             "30"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = json.loads(result.stdout)
    assert len(trials) == 30
    assert all(t["model"] in (0, 1) for t in trials), trials
    assert all(t["after"] == 0 for t in trials), trials
    assert sum(t["left"] > 0 for t in trials) > 0, trials   # some kills were mid-save


# --- numrec train and signals --------------------------------------------------------------

def test_train_refuses_a_pipe_as_output_before_training(tmp_path, small_data, capsys):
    os.mkfifo(tmp_path / "pipe")
    status = cli.main(["train", "--data", str(small_data), "--epochs", "1",
                       "--output", str(tmp_path / "pipe")])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "is a named pipe, not a regular file" in err
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)


def test_a_huge_batch_size_is_capped_by_the_data(tmp_path, small_data, capsys):
    out = tmp_path / "m.npz"
    status = cli.main(["train", "--data", str(small_data), "--epochs", "1", "--quiet",
                       "--batch-size", "1000000000", "--output", str(out), "--json"])
    assert status in (0, 1), capsys.readouterr().err   # 1: one batch learns little
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["epochs"] == 1 and numrec.load(out).n_inputs == 784


def test_threads_are_capped_by_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert cli._threads(1024) == min(1024, cores)
    assert cli._threads(1) == 1 and cli._threads(None) is None


def _fit_then(monkeypatch, after):
    """Make Sequential.fit train as usual, then call ``after()`` (a signal's effect)."""
    real_fit = numrec.Sequential.fit

    def fit(self, *args, **kwargs):
        history = real_fit(self, *args, **kwargs)
        after()
        return history

    monkeypatch.setattr(numrec.Sequential, "fit", fit)


def test_ctrl_c_after_the_last_epoch_names_it(tmp_path, small_data, capsys, monkeypatch):
    def ctrl_c():
        raise KeyboardInterrupt

    _fit_then(monkeypatch, ctrl_c)
    out = tmp_path / "m.npz"
    status = cli.main(["train", "--data", str(small_data), "--epochs", "2", "--output",
                       str(out)])
    err = capsys.readouterr().err
    assert status == 130
    assert err == f"numrec: interrupted after the last epoch (2); the model trained so far " \
                  f"is saved to {out}\n"
    assert numrec.load(out).n_inputs == 784


@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_the_final_save_waits_for_it(tmp_path, small_data, capsys,
                                                     monkeypatch, signum, status, word):
    """Ctrl-C or SIGTERM while the finished model is being saved: the save completes."""
    real_save = numrec.Sequential.save

    def save(self, path):
        os.kill(os.getpid(), signum)
        time.sleep(0.05)   # the handler runs here, mid-save
        real_save(self, path)

    monkeypatch.setattr(numrec.Sequential, "save", save)
    out = tmp_path / "m.npz"
    code = cli.main(["train", "--data", str(small_data), "--epochs", "1", "--quiet",
                     "--output", str(out)])
    assert code == status
    assert capsys.readouterr().err == f"numrec: {word}; the model is saved to {out}\n"
    assert numrec.load(out).n_inputs == 784
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("second, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_stops_the_save_at_once_leaving_the_old_file(
        tmp_path, small_data, capsys, monkeypatch, second, status):
    out = tmp_path / "m.npz"
    small_model().save(out)
    before = out.read_bytes()

    def ctrl_c():
        raise KeyboardInterrupt

    def slow_savez(file, **arrays):
        file.write(b"PK\x03\x04 part of an archive")
        os.kill(os.getpid(), second)
        time.sleep(0.05)
        raise AssertionError("the second signal did not stop the save")

    _fit_then(monkeypatch, ctrl_c)
    monkeypatch.setattr(np, "savez", slow_savez)
    code = cli.main(["train", "--data", str(small_data), "--epochs", "1", "--quiet",
                     "--output", str(out)])
    err = capsys.readouterr().err
    assert code == status and err.count("\n") == 1
    assert "stopped without saving" in err and str(out) in err
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def _command():
    """The installed ``numrec`` command beside this Python, or None."""
    path = Path(sys.executable).parent / "numrec"
    return path if path.exists() else None


@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_numrec_is_being_imported_gives_one_line(tmp_path, signum, status,
                                                                word):
    """The command's first half second is spent importing NumPy and SciPy: a signal
    then ends it with one line, not a traceback."""
    command = _command()
    if command is None:
        pytest.skip("the numrec command is not installed beside this Python")
    process = subprocess.Popen(
        [str(command), "train", "--epochs", "1", "--output", str(tmp_path / "m.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:   # numpy's compiled core is mapped: the import of numrec is under way
                if "numpy" in Path(f"/proc/{process.pid}/maps").read_text():
                    break
            except OSError:
                pass
            time.sleep(0.002)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"numrec: {word}")
