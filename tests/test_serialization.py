"""Model files: round trips, atomic writes, and every kind of broken file."""
import io
import json
import os
import pickle

import numpy as np
import pytest

import numrec
from numrec import serialization
from numrec.serialization import ModelFileError, load, save_model


def small_model(dtype=np.float32, seed=0):
    return numrec.Sequential([
        numrec.Dense(6, 5, seed=seed, dtype=dtype), numrec.LeakyReLU(0.2),
        numrec.Dense(5, 4, seed=seed + 1, dtype=dtype), numrec.LeakyReLU(0.05),
        numrec.Dense(4, 3, seed=seed + 2, dtype=dtype), numrec.Sigmoid(),
    ])


def architecture_of(model):
    return {
        "format": "numrec-model", "version": 1, "dtype": np.dtype(model.dtype).name,
        "components": [{"type": type(c).__name__, "config": c.get_config()}
                       for c in model.components],
    }


def write_model_file(path, architecture, params, *, as_string=False):
    """Write a model file by hand: ``architecture`` is a dict, text or raw bytes."""
    if isinstance(architecture, dict):
        architecture = json.dumps(architecture)
    if as_string:
        entry = np.array(architecture)
    else:
        if isinstance(architecture, str):
            architecture = architecture.encode("utf-8")
        entry = np.frombuffer(architecture, dtype=np.uint8)
    arrays = {f"param_{i}": p for i, p in enumerate(params)}
    np.savez(path, architecture=entry, **arrays)
    return path


def rows(n, n_inputs=6, dtype=np.float32):
    return np.random.default_rng(1).standard_normal((n, n_inputs)).astype(dtype)


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path, dtype):
    model = small_model(dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = numrec.load(path)
    assert isinstance(loaded, numrec.Sequential)
    assert loaded.dtype == np.dtype(dtype)
    assert repr(loaded) == repr(model)
    assert [type(c) for c in loaded.components] == [type(c) for c in model.components]
    for saved, restored in zip(model.parameters(), loaded.parameters()):
        assert restored.dtype == saved.dtype and restored.shape == saved.shape
        assert restored.tobytes() == saved.tobytes()  # bit-identical
    x = rows(9, dtype=dtype)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_round_trip_of_the_reference_network(tmp_path):
    model = numrec.mnist_mlp(seed=3)
    model.save(str(tmp_path / "mnist.npz"))
    loaded = load(str(tmp_path / "mnist.npz"))
    x = np.random.default_rng(0).integers(0, 256, (20, 784), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_loaded_model_trains_like_the_original(tmp_path):
    # The parameters are copied into the compiled layers' own arrays: training the loaded
    # model updates exactly what the original's training updates.
    model = small_model()
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    x, y = rows(40), np.arange(40) % 3
    for m in (model, loaded):
        m.fit(x, y, epochs=2, batch_size=8, seed=5, optimizer=numrec.SGD(0.1))
    for a, b in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(load(tmp_path / "m.npz").parameters()[0], model.parameters()[0])


def test_loaded_model_is_independent_of_the_file_and_the_original(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    model.components[0].weights = np.zeros((5, 6), dtype=np.float32)
    assert np.any(loaded.parameters()[0] != 0)


def test_path_is_written_exactly_as_given(tmp_path):
    path = tmp_path / "model.weights"
    small_model().save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights"]
    assert isinstance(load(path), numrec.Sequential)


def test_file_holds_the_documented_entries(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["architecture"] + [f"param_{i}" for i in range(6)]
        architecture = json.loads(archive["architecture"].tobytes())
    assert architecture == architecture_of(model)
    assert architecture["components"][0] == {
        "type": "Dense", "config": {"in_features": 6, "out_features": 5, "dtype": "float32"}}
    assert architecture["components"][1] == {"type": "LeakyReLU", "config": {"alpha": 0.2}}
    assert architecture["components"][5] == {"type": "Sigmoid", "config": {}}


def test_architecture_stored_as_a_string_is_read(tmp_path):
    model = small_model()
    path = write_model_file(tmp_path / "m.npz", architecture_of(model), model.parameters(),
                            as_string=True)
    np.testing.assert_array_equal(load(path).predict(rows(3)), model.predict(rows(3)))


def test_model_without_parameters(tmp_path):
    model = numrec.Sequential([numrec.Sigmoid()])
    model.save(tmp_path / "m.npz")
    x = rows(4)
    np.testing.assert_array_equal(load(tmp_path / "m.npz").predict(x), model.predict(x))


def test_overwrite(tmp_path):
    path = tmp_path / "m.npz"
    small_model(seed=0).save(path)
    second = small_model(seed=10)
    second.save(path)
    np.testing.assert_array_equal(load(path).predict(rows(3)), second.predict(rows(3)))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


# --- what cannot be saved ------------------------------------------------------------------

class Tanh(numrec.Activation):
    def forward(self, z):
        return np.tanh(z)

    def derivative(self, z, a):
        return 1 - a * a


class MyDense(numrec.Dense):
    pass


@pytest.mark.parametrize("component, name", [(Tanh(), "Tanh"), (MyDense(5, 3), "MyDense")])
def test_python_components_cannot_be_saved(tmp_path, component, name):
    model = numrec.Sequential([numrec.Dense(6, 5), component])
    with pytest.raises(TypeError, match=rf"components\[1\] \(.*{name}\).*built-in"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_only_models_are_saved(tmp_path):
    with pytest.raises(TypeError, match="Sequential"):
        save_model(numrec.Dense(2, 2), tmp_path / "m.npz")


def test_non_finite_parameters_are_not_saved(tmp_path):
    model = small_model()
    model.parameters()[1][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


# --- atomic writes -------------------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, error):
    path = tmp_path / "m.npz"
    small_model(seed=0).save(path)
    before = path.read_bytes()

    def failing_savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise error

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(type(error)):
        small_model(seed=1).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    monkeypatch.undo()
    assert isinstance(load(path), numrec.Sequential)


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def failing_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="no space"):
        small_model().save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_on_save(tmp_path):
    with pytest.raises(FileNotFoundError):
        small_model().save(tmp_path / "absent" / "m.npz")


# --- broken files --------------------------------------------------------------------------

def assert_model_file_error(path, pattern):
    with pytest.raises(ModelFileError, match=pattern) as info:
        load(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    return info.value


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)
    assert numrec.ModelFileError is ModelFileError


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load(tmp_path / "absent.npz")


def test_empty_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"")
    assert_model_file_error(path, "empty")


@pytest.mark.parametrize("content", [b"hello, world\n" * 10, bytes(range(256)), b"P"])
def test_garbage(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    assert_model_file_error(path, "not a numrec model file")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, fraction):
    path = tmp_path / "m.npz"
    small_model().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    assert_model_file_error(path, "damaged or truncated")


def test_damaged_entry(tmp_path):
    path = tmp_path / "m.npz"
    small_model().save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY", 200)  # the header of an array after 'architecture'
    data[start:start + 6] = b"garbage"[:6]
    path.write_bytes(bytes(data))
    assert_model_file_error(path, "not a valid numrec model file")


def test_pickle_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    assert_model_file_error(path, "pickle")


def test_npz_with_an_object_array(tmp_path):
    model = small_model()
    params = model.parameters()
    params[0] = np.array([{"run": "code"}], dtype=object)
    path = tmp_path / "m.npz"
    np.savez(path, architecture=np.frombuffer(json.dumps(architecture_of(model)).encode(),
                                              dtype=np.uint8),
             **{f"param_{i}": p for i, p in enumerate(params)})
    assert_model_file_error(path, "param_0.*Python objects")


def test_object_array_as_architecture(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, architecture=np.array([architecture_of(small_model())], dtype=object))
    assert_model_file_error(path, "architecture.*Python objects")


def test_single_npy_file(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as file:
        np.save(file, np.zeros(3))
    assert_model_file_error(path, r"single \.npy array")


def test_npz_without_architecture(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, param_0=np.zeros(3))
    assert_model_file_error(path, "no 'architecture' entry")


def test_zip_that_is_not_npz(tmp_path):
    import zipfile
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert_model_file_error(path, "not a numrec model file")


def _architecture_cases():
    def edit(function):
        architecture = architecture_of(small_model())
        function(architecture)
        return architecture

    def set_config(index, key, value):
        return lambda a: a["components"][index]["config"].__setitem__(key, value)

    return [
        (edit(lambda a: a.__setitem__("format", "keras")), "format is 'keras'"),
        (edit(lambda a: a.__setitem__("version", 2)), "version 2 .* newer numrec"),
        (edit(lambda a: a.__setitem__("version", "1")), "version must be a positive integer"),
        (edit(lambda a: a.__setitem__("dtype", "int8")), "model dtype must be"),
        (edit(lambda a: a.__setitem__("extra", 1)), "optionally .loss."),
        (edit(lambda a: a.__setitem__("components", [])), "non-empty list"),
        (edit(lambda a: a.__setitem__("loss", "MSE")), "'loss' must be an object"),
        (edit(lambda a: a.__setitem__("loss", {"type": "SGD", "config": {}})),
         "unknown loss 'SGD' .known: MSE"),
        (edit(lambda a: a.__setitem__("loss", {"type": "MSE", "config": {"eps": 10 ** 401}})),
         "loss MSE must map names to finite numbers"),
        (edit(lambda a: a.__setitem__("loss", {"type": "MSE", "config": {"eps": 0.1}})),
         "invalid config for the loss MSE"),
        (edit(lambda a: a.__setitem__("components", {"type": "Dense"})), "non-empty list"),
        (edit(lambda a: a["components"][1].__setitem__("type", "os.system")),
         r"components\[1\] has unknown type 'os.system'"),
        (edit(lambda a: a["components"][1].__setitem__("type", "Swish")), "unknown type 'Swish'"),
        (edit(lambda a: a["components"][1].__setitem__("code", "x")), "keys 'type' and 'config'"),
        (edit(lambda a: a["components"][1].__setitem__("config", [0.2])), "config with the keys"),
        (edit(set_config(0, "in_features", "6")), "invalid in_features: '6'"),
        (edit(set_config(0, "in_features", 6.0)), "invalid in_features: 6.0"),
        (edit(set_config(0, "in_features", True)), "invalid in_features: True"),
        (edit(set_config(0, "out_features", -5)), "invalid out_features: -5"),
        (edit(set_config(0, "dtype", "object")), "invalid dtype: 'object'"),
        (edit(set_config(0, "dtype", "float64")), "dtype 'float64' but the model's is 'float32'"),
        (edit(set_config(0, "seed", 1)), "config with the keys"),
        (edit(set_config(1, "alpha", "0.2")), "invalid alpha"),
        (edit(set_config(1, "alpha", -1.0)), "invalid alpha"),
        (edit(set_config(1, "alpha", 10 ** 401)), "invalid alpha"),
        (edit(lambda a: a["components"][5].__setitem__("config", {"x": 1})), "config with the keys"),
        (edit(lambda a: a["components"].insert(2, {"type": "Dense", "config": {
            "in_features": 5, "out_features": 5, "dtype": "float32"}})),
         "needs 8 arrays .*missing param_6, param_7"),
    ]


@pytest.mark.parametrize("architecture, pattern", _architecture_cases())
def test_wrong_architecture(tmp_path, architecture, pattern):
    path = write_model_file(tmp_path / "m.npz", architecture, small_model().parameters())
    assert_model_file_error(path, pattern)


@pytest.mark.parametrize("text, pattern", [
    (b"{not json", "not valid JSON"),
    (b'{"format": "numrec-model", "version": NaN}', "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
])
def test_architecture_that_is_not_a_json_object(tmp_path, text, pattern):
    path = write_model_file(tmp_path / "m.npz", text, [])
    assert_model_file_error(path, pattern)


def test_architecture_of_the_wrong_dtype(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, architecture=np.zeros((2, 2)))
    assert_model_file_error(path, "architecture entry must be")


def test_widths_that_do_not_chain(tmp_path):
    first, second = numrec.Dense(6, 5), numrec.Dense(4, 3)
    architecture = {
        "format": "numrec-model", "version": 1, "dtype": "float32",
        "components": [{"type": "Dense", "config": first.get_config()},
                       {"type": "Dense", "config": second.get_config()}],
    }
    path = write_model_file(tmp_path / "m.npz", architecture,
                            first.parameters() + second.parameters())
    assert_model_file_error(path, "inconsistent architecture.*expects 4 inputs")


def test_missing_and_extra_parameters(tmp_path):
    model = small_model()
    params = model.parameters()
    path = write_model_file(tmp_path / "a.npz", architecture_of(model), params[:-1])
    assert_model_file_error(path, "needs 6 arrays .*missing param_5")
    path = write_model_file(tmp_path / "b.npz", architecture_of(model), params + [params[0]])
    assert_model_file_error(path, "unexpected param_6")


def test_parameter_of_the_wrong_shape(tmp_path):
    model = small_model()
    params = model.parameters()
    params[2] = params[2].T.copy()
    path = write_model_file(tmp_path / "m.npz", architecture_of(model), params)
    assert_model_file_error(path, r"param_2 has shape \(5, 4\) but the architecture needs \(4, 5\)")


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.float16])
def test_parameter_of_the_wrong_dtype(tmp_path, dtype):
    model = small_model()
    params = model.parameters()
    params[1] = params[1].astype(dtype)
    path = write_model_file(tmp_path / "m.npz", architecture_of(model), params)
    assert_model_file_error(path, "param_1 has dtype .* the model's dtype is float32")


def test_big_endian_parameters_are_accepted(tmp_path):
    model = small_model()
    params = [p.astype(p.dtype.newbyteorder(">")) for p in model.parameters()]
    path = write_model_file(tmp_path / "m.npz", architecture_of(model), params)
    np.testing.assert_array_equal(load(path).predict(rows(3)), model.predict(rows(3)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters(tmp_path, value):
    model = small_model()
    params = [p.copy() for p in model.parameters()]
    params[4][1, 2] = value
    path = write_model_file(tmp_path / "m.npz", architecture_of(model), params)
    assert_model_file_error(path, "param_4 holds NaN or infinite values")


def test_load_reads_from_a_path_only(tmp_path):
    # A model file is named by a path; file objects are not accepted.
    with pytest.raises(TypeError):
        load(io.BytesIO(b""))


def test_components_table_is_the_list_of_savable_types():
    """A model file holds exactly the registered layers and activations."""
    from numrec.registry import BUILTINS

    expected = {name: entry for name, entry in BUILTINS.items()
                if entry.kind in ("layer", "activation")}
    assert "Dense" in expected and len(expected) >= 2
    assert list(serialization.COMPONENTS) == list(expected)  # same names, same order
    for name, spec in serialization.COMPONENTS.items():
        assert spec is expected[name]
        assert spec.cls.__name__ == name
        base = numrec.Layer if spec.kind == "layer" else numrec.Activation
        assert issubclass(spec.cls, base)
    # Losses and optimizers are not part of a model, so a file never names them.
    for name, entry in BUILTINS.items():
        if entry.kind in ("loss", "optimizer"):
            assert name not in serialization.COMPONENTS


class NumpyMSE(numrec.Loss):
    def value(self, output, target):
        return float(((output - target) ** 2).sum(axis=1).mean())

    def gradient(self, output, target):
        return 2 * (output - target) / len(output)


def test_the_training_loss_is_kept_when_built_in(tmp_path):
    x = np.random.default_rng(0).random((20, 6), dtype=np.float32)
    model = small_model()
    model.fit(x, np.arange(20) % 3, loss=numrec.MSE(), optimizer=numrec.SGD(0.1))
    model.save(tmp_path / "m.npz")
    assert type(load(tmp_path / "m.npz").loss) is numrec.MSE
    assert architecture_of_file(tmp_path / "m.npz")["loss"] == {"type": "MSE", "config": {}}
    model.fit(x, np.arange(20) % 3, loss=NumpyMSE(), optimizer=numrec.SGD(0.1))
    model.save(tmp_path / "python-loss.npz")
    assert load(tmp_path / "python-loss.npz").loss is None
    assert load_untrained(tmp_path).loss is None


def architecture_of_file(path):
    import json
    with np.load(path) as archive:
        return json.loads(archive["architecture"].tobytes())


def load_untrained(tmp_path):
    small_model().save(tmp_path / "untrained.npz")
    return load(tmp_path / "untrained.npz")


def test_a_save_into_a_missing_directory_names_it_and_not_a_temporary_file(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        small_model().save(tmp_path / "nodir" / "sub" / "m.npz")
    message = str(caught.value)
    assert "no such directory" in message and str(tmp_path / "nodir" / "sub") in message
    assert ".tmp" not in message and "m.npz" in message


def test_a_save_into_a_read_only_directory_names_the_file(tmp_path):
    import os
    if os.geteuid() == 0:
        pytest.skip("root may write into read-only directories")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    with pytest.raises(PermissionError) as caught:
        small_model().save(tmp_path / "ro" / "m.npz")
    assert ".tmp" not in str(caught.value) and "m.npz" in str(caught.value)
    assert list((tmp_path / "ro").iterdir()) == []


def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    abandoned = tmp_path / f".m.npz.{dead}.abcd1234.tmp"
    abandoned.write_bytes(b"PK\x03\x04 half an archive")
    in_progress = tmp_path / f".m.npz.{os.getpid()}.live5678.tmp"  # this process: alive
    in_progress.write_bytes(b"being written")
    other = tmp_path / f".other.npz.{dead}.abcd1234.tmp"   # another path's: not ours
    other.write_bytes(b"x")
    small_model().save(tmp_path / "m.npz")
    assert not abandoned.exists() and in_progress.exists() and other.exists()
    assert isinstance(load(tmp_path / "m.npz"), numrec.Sequential)


def _rewrite_member(source, target, name, transform):
    import zipfile
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info.filename, transform(data) if info.filename == name else data)


def _architecture_for(tmp_path, n_in, n_out):
    """A model file whose architecture says Dense(n_in, n_out), Sigmoid, with the
    parameters of a small model (whose members the tests then rewrite)."""
    import zipfile
    source = tmp_path / "small.npz"
    numrec.Sequential([numrec.Dense(3, 2), numrec.Sigmoid()]).save(source)
    architecture = {"format": "numrec-model", "version": 1, "dtype": "float32",
                    "components": [{"type": "Dense", "config": {
                        "in_features": n_in, "out_features": n_out, "dtype": "float32"}},
                        {"type": "Sigmoid", "config": {}}]}
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(architecture).encode(), dtype=np.uint8))
    target = tmp_path / "edited.npz"
    _rewrite_member(source, target, "architecture.npy", lambda data: buffer.getvalue())
    return target


def _npy_header(shape):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_member_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    """Dense(100000, 100000) declared, 12 bytes of data: 37 GiB must not be asked for."""
    path = _architecture_for(tmp_path, 100000, 100000)
    edited = tmp_path / "huge.npz"
    _rewrite_member(path, edited, "param_0.npy",
                    lambda data: _npy_header((100000, 100000)) + b"\0" * 12)
    assert_model_file_error(edited, r"parameters take 40000400000 bytes, more than the "
                                    r"limit of 268435456 \(pass max_bytes=")
    with pytest.raises(ModelFileError, match=r"param_0' announces shape \(100000, 100000\) "
                                             r".* but holds \d+ bytes"):
        load(edited, max_bytes=10**12)   # within the limit, but the data is not there


def test_a_flipped_byte_in_a_member_header_is_a_model_file_error(tmp_path):
    source = tmp_path / "m.npz"
    small_model().save(source)

    def flip(data):
        data = bytearray(data)
        data[data.index(b"(")] = ord("[")   # the shape's bracket: the header no longer parses
        return bytes(data)

    edited = tmp_path / "flipped.npz"
    _rewrite_member(source, edited, "param_0.npy", flip)
    assert_model_file_error(edited, "param_0' has a damaged .npy header")


def test_a_header_key_of_bytes_is_a_model_file_error(tmp_path):
    """NumPy's header parser sorts the keys and raises TypeError on a key of bytes."""
    source = tmp_path / "m.npz"
    small_model().save(source)

    def bytes_key(data):
        # One padding space less keeps the header's declared length.
        return data.replace(b"'fortran_order'", b"b'fortran_order'", 1).replace(b" \n", b"\n", 1)

    edited = tmp_path / "bytes_key.npz"
    _rewrite_member(source, edited, "architecture.npy", bytes_key)
    assert_model_file_error(edited, "architecture' has a damaged .npy header")


class Scaled(numrec.Activation):
    """f(z) = scale * z, a Python activation with a setting."""

    def __init__(self, scale):
        self.scale = scale

    def forward(self, z):
        return z * self.scale

    def derivative(self, z, a):
        return np.full_like(z, self.scale)

    def get_config(self):
        return {"scale": self.scale}


class Diagonal(numrec.Layer):
    """z = x * w + b elementwise, a Python layer with parameters."""

    def __init__(self, width):
        self.width = width
        self.w, self.b = np.ones(width, np.float32), np.zeros(width, np.float32)

    def forward(self, x):
        return x * self.w + self.b

    def parameters(self):
        return [self.w, self.b]

    def gradients(self):
        return [np.zeros_like(self.w), np.zeros_like(self.b)]

    def get_config(self):
        return {"width": self.width}


@pytest.fixture
def registered():
    from numrec.registry import register_custom, unregister_custom
    register_custom(Scaled, "activation", config={"scale": lambda v: isinstance(v, float)})
    register_custom(Diagonal, "layer", config={"width": lambda v: isinstance(v, int)},
                    shapes=lambda config: [(config["width"],), (config["width"],)])
    yield
    unregister_custom(Scaled)
    unregister_custom(Diagonal)


def test_components_of_ones_own_save_and_load_once_registered(tmp_path, registered):
    diagonal = Diagonal(4)
    diagonal.w[...] = [1.5, -2.0, 0.25, 3.0]
    model = numrec.Sequential([numrec.Dense(6, 4, seed=0), Scaled(0.5), diagonal,
                               numrec.Sigmoid()])
    model.save(tmp_path / "own.npz")
    loaded = load(tmp_path / "own.npz")
    assert [type(c) for c in loaded.components] == [numrec.Dense, Scaled, Diagonal,
                                                    numrec.Sigmoid]
    assert loaded.components[1].scale == 0.5
    x = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_unregistered_components_say_how_to_register_them(tmp_path, registered):
    model = numrec.Sequential([numrec.Dense(6, 4, seed=0), Scaled(0.5)])
    model.save(tmp_path / "own.npz")
    from numrec.registry import unregister_custom, register_custom
    unregister_custom(Scaled)
    try:
        assert_model_file_error(tmp_path / "own.npz", "unknown type 'Scaled' .*register_custom")
        with pytest.raises(TypeError, match="registered with numrec.registry.register_custom"):
            model.save(tmp_path / "again.npz")
    finally:
        register_custom(Scaled, "activation", config={"scale": lambda v: isinstance(v, float)})


def test_register_custom_refuses_what_it_cannot_save():
    from numrec.registry import register_custom
    with pytest.raises(ValueError, match="the name Sigmoid is taken already"):
        register_custom(type("Sigmoid", (numrec.Activation,), {}), "activation")
    with pytest.raises(TypeError, match="must subclass numrec.Layer"):
        register_custom(Scaled, "layer")
    with pytest.raises(ValueError, match="kind must be 'layer' or 'activation'"):
        register_custom(Scaled, "loss")
