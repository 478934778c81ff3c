"""grader.execution.capture (runs in the student's process) and grader.checking.answers (reads
what it wrote, without trusting it): the round trip, the rules that pick the
graded value, and files a hostile notebook could leave in the answers folder."""

import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from grader.checking.answers import MANIFEST_LIMIT, BadAnswerFile, load_answers, load_npy
from grader.execution import capture as capture_module
from grader.execution.base import FINAL_POINT, CellRun, ExecutionRecord, point_name
from grader.execution.capture import call_source, capture, loader_source
from grader.execution.plan import ExecutionPlan, Step

MAX = 1 << 20


def make_plan(names, steps, final=None, max_bytes=MAX):
    """steps: [(cell_index, {name: expression})]; final defaults to every name."""
    return ExecutionPlan(
        answer_names=list(names),
        steps=[Step(i, f"# cell {i}", dict(c)) for i, c in steps],
        final_captures={n: n for n in names} if final is None else final,
        notices={},
        data_files=[],
        cell_timeout=60,
        notebook_timeout=300,
        max_answer_bytes=max_bytes,
    )


def make_record(statuses, stopped=None):
    return ExecutionRecord(executor="test", cells=[CellRun(i, s) for i, s in statuses.items()], stopped=stopped)


def capture_one(tmp_path, namespace, name="x", expression=None, max_bytes=MAX):
    """Capture one answer at the end of the notebook and read it back."""
    capture(namespace, {name: expression or name}, str(tmp_path), FINAL_POINT, max_bytes)
    plan = make_plan([name], [], max_bytes=max_bytes)
    return load_answers(plan, make_record({}), tmp_path)[name]


# --- capture -> load_answers round trip ----------------------------------------------


@pytest.mark.parametrize(
    "value, dtype",
    [
        (np.array([[1.5, 2.5], [3.5, -4.0]], dtype=np.float32), np.float32),
        (np.linspace(0, 1, 7).reshape(1, 7, 1, 1), np.float64),
        (np.arange(6, dtype=np.int32).reshape(2, 3), np.int32),
        (np.array([True, False, True]), np.bool_),
        (np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.float64),
        (np.arange(12.0).reshape(3, 4)[:, ::2], np.float64),  # non-contiguous view
        (np.array([1, 2, 3], dtype=">i4"), np.dtype(">i4")),
    ],
)
def test_numeric_arrays_round_trip(tmp_path, value, dtype):
    answer = capture_one(tmp_path, {"x": value})
    assert answer.status == "ok" and answer.ok
    assert answer.value.dtype == dtype
    assert answer.value.shape == value.shape
    np.testing.assert_array_equal(answer.value, value)
    assert answer.where == "at the end of the notebook"
    assert answer.type_name == "numpy.ndarray"


@pytest.mark.parametrize(
    "value, expected, type_name",
    [
        ([1, 2.5, 3], np.array([1.0, 2.5, 3.0]), "builtins.list"),
        ([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]]), "builtins.list"),
        ((True, False), np.array([True, False]), "builtins.tuple"),
    ],
)
def test_python_numbers_are_converted(tmp_path, value, expected, type_name):
    answer = capture_one(tmp_path, {"x": value})
    assert answer.status == "ok"
    assert answer.value.shape == expected.shape
    np.testing.assert_array_equal(answer.value, expected)
    assert answer.value.dtype.kind == expected.dtype.kind
    assert answer.type_name == type_name


@pytest.mark.parametrize(
    "value, type_name",
    [
        (7, "builtins.int"),
        (2.5, "builtins.float"),
        (np.float32(1.5), "numpy.float32"),
        (np.array(3.25), "numpy.ndarray"),
    ],
)
def test_scalars_keep_their_value(tmp_path, value, type_name):
    answer = capture_one(tmp_path, {"x": value})
    assert answer.status == "ok" and answer.type_name == type_name
    assert answer.value.size == 1 and float(answer.value.ravel()[0]) == float(value)


@pytest.mark.parametrize("value", [7, 2.5, np.float32(1.5), np.array(3.25)], ids=["int", "float", "np_float32", "0d"])
def test_scalars_keep_shape_0d(tmp_path, value):
    answer = capture_one(tmp_path, {"x": value})
    assert answer.status == "ok"
    assert answer.value.shape == ()


def test_array_like_object_with_dunder_array(tmp_path):
    class Tensor:  # what a tf.Tensor looks like to np.asarray
        def __array__(self, dtype=None, copy=None):
            return np.full((1, 2, 2, 1), 4.0, dtype=np.float32)

    answer = capture_one(tmp_path, {"x": Tensor()})
    assert answer.status == "ok" and answer.value.shape == (1, 2, 2, 1)
    assert answer.type_name.endswith("Tensor")


def test_missing_name(tmp_path):
    answer = capture_one(tmp_path, {"y": 1})
    assert answer.status == "missing" and not answer.ok
    assert answer.detail == "name 'x' is not defined"
    assert answer.value is None


def test_expression_that_raises(tmp_path):
    class Model:
        def get_weights(self):
            return []

    answer = capture_one(tmp_path, {"model": Model()}, "k", "model.get_weights()[0]")
    assert answer.status == "missing"
    assert "model.get_weights()[0]" in answer.detail and "IndexError" in answer.detail


def test_expression_on_undefined_name(tmp_path):
    answer = capture_one(tmp_path, {}, "k", "model.get_weights()[0]")
    assert answer.status == "missing" and "NameError" in answer.detail


def test_expression_raising_base_exception_is_caught(tmp_path):
    class Evil:
        @property
        def value(self):
            raise SystemExit(3)

    answer = capture_one(tmp_path, {"obj": Evil()}, "k", "obj.value")
    assert answer.status == "missing" and "SystemExit" in answer.detail


def test_long_exception_detail_is_shortened(tmp_path):
    answer = capture_one(tmp_path, {"msg": "x" * 5000}, "k", "exec('raise ValueError(msg)')")
    assert answer.status == "missing"
    assert len(answer.detail) <= capture_module.DETAIL_LIMIT and answer.detail.endswith("...")


@pytest.mark.parametrize(
    "value, type_name",
    [
        ("a string", "builtins.str"),
        (None, "builtins.NoneType"),
        (np.array([1, "a", None], dtype=object), "numpy.ndarray"),
        ({"a": 1}, "builtins.dict"),
        (np.array([1 + 2j]), "numpy.ndarray"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "numpy.ndarray"),
        ([[1, 2], [3]], "builtins.list"),  # ragged
    ],
)
def test_unsupported_values(tmp_path, value, type_name):
    answer = capture_one(tmp_path, {"x": value})
    assert answer.status == "unsupported"
    assert answer.type_name == type_name
    assert answer.detail
    assert not list(tmp_path.glob("*.npy"))  # nothing written for it


def test_array_that_cannot_be_converted(tmp_path):
    class Broken:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("no")

    answer = capture_one(tmp_path, {"x": Broken()})
    assert answer.status == "unsupported"
    assert "cannot be converted to an array (RuntimeError: no)" in answer.detail


def test_too_large_array(tmp_path):
    answer = capture_one(tmp_path, {"x": np.zeros(1000)}, max_bytes=7999)
    assert answer.status == "too_large"
    assert "8000 bytes, more than the 7999 allowed" in answer.detail
    assert not list(tmp_path.glob("*.npy"))
    assert capture_one(tmp_path, {"x": np.zeros(1000)}, max_bytes=8000).status == "ok"


def test_capture_writes_manifest_and_files_atomically(tmp_path):
    capture({"a": np.ones(2), "b": "s"}, {"a": "a", "b": "b", "c": "c"}, str(tmp_path), "cell0003", MAX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell0003--a.npy", "cell0003.json"]
    manifest = json.loads((tmp_path / "cell0003.json").read_text())
    assert manifest["a"] == {"status": "ok", "type": "numpy.ndarray", "file": "cell0003--a.npy"}
    assert manifest["b"]["status"] == "unsupported" and manifest["c"]["status"] == "missing"


# --- which captured value is graded --------------------------------------------------------


def test_tagged_cell_value_wins_over_end_value(tmp_path):
    capture({"x": np.array([1.0])}, {"x": "x"}, str(tmp_path), point_name(3), MAX)
    capture({"x": np.array([2.0])}, {"x": "x"}, str(tmp_path), FINAL_POINT, MAX)
    plan = make_plan(["x"], [(3, {"x": "x"})])
    answer = load_answers(plan, make_record({3: "ok"}), tmp_path)["x"]
    assert answer.value.tolist() == [1.0]
    assert answer.where == "after cell 4"


def test_last_of_several_tagged_cells_wins(tmp_path):
    capture({"x": np.array([1.0])}, {"x": "x"}, str(tmp_path), point_name(2), MAX)
    capture({"x": np.array([5.0])}, {"x": "x"}, str(tmp_path), point_name(6), MAX)
    plan = make_plan(["x"], [(2, {"x": "x"}), (6, {"x": "x"})])
    answer = load_answers(plan, make_record({2: "ok", 6: "ok"}), tmp_path)["x"]
    assert answer.value.tolist() == [5.0] and answer.where == "after cell 7"


def test_falls_back_to_end_value_when_tagged_cell_did_not_define_it(tmp_path):
    capture({}, {"x": "x"}, str(tmp_path), point_name(3), MAX)
    capture({"x": np.array([2.0])}, {"x": "x"}, str(tmp_path), FINAL_POINT, MAX)
    plan = make_plan(["x"], [(3, {"x": "x"})])
    answer = load_answers(plan, make_record({3: "ok"}), tmp_path)["x"]
    assert answer.value.tolist() == [2.0]
    assert answer.where == "at the end of the notebook"


def test_tagged_failure_reported_when_end_value_missing_too(tmp_path):
    capture({"x": "text"}, {"x": "x"}, str(tmp_path), point_name(3), MAX)
    capture({}, {"x": "x"}, str(tmp_path), FINAL_POINT, MAX)
    plan = make_plan(["x"], [(3, {"x": "x"})])
    answer = load_answers(plan, make_record({3: "ok"}), tmp_path)["x"]
    assert answer.status == "unsupported" and answer.where == "after cell 4"


def test_cell_not_run_gives_not_run(tmp_path):
    plan = make_plan(["x"], [(5, {"x": "x"})])
    record = make_record({5: "not_run"}, stopped="the notebook ran out of time")
    answer = load_answers(plan, record, tmp_path)["x"]
    assert answer.status == "not_run" and not answer.ok
    assert answer.detail == "cell 6 never ran (the notebook ran out of time)"
    assert answer.where == "after cell 6"


def test_cell_not_run_ignores_a_stale_capture(tmp_path):
    """Only a cell that ran can provide the value captured after it."""
    capture({"x": np.array([1.0])}, {"x": "x"}, str(tmp_path), point_name(5), MAX)
    plan = make_plan(["x"], [(5, {"x": "x"})])
    answer = load_answers(plan, make_record({5: "not_run"}), tmp_path)["x"]
    assert answer.status == "not_run" and "execution stopped" in answer.detail


def test_no_capture_written_is_not_run(tmp_path):
    plan = make_plan(["x"], [])
    answer = load_answers(plan, make_record({}), tmp_path)["x"]
    assert answer.status == "not_run" and answer.detail == "no capture was written"


def test_expression_answer_is_never_taken_from_the_end(tmp_path):
    capture({}, {"k": "model.get_weights()[0]"}, str(tmp_path), point_name(2), MAX)
    # a stray end-of-notebook value under the same name must not be used
    capture({"k": np.ones(3)}, {"k": "k"}, str(tmp_path), FINAL_POINT, MAX)
    plan = make_plan(["k"], [(2, {"k": "model.get_weights()[0]"})], final={})
    answer = load_answers(plan, make_record({2: "ok"}), tmp_path)["k"]
    assert answer.status == "missing" and "NameError" in answer.detail


def test_expression_answer_without_a_cell(tmp_path):
    plan = make_plan(["k"], [], final={})
    answer = load_answers(plan, make_record({}), tmp_path)["k"]
    assert answer.status == "missing" and answer.detail == "its cell was not found"


def test_every_answer_name_gets_a_result(tmp_path):
    capture({"a": 1.0}, {"a": "a", "b": "b"}, str(tmp_path), FINAL_POINT, MAX)
    answers = load_answers(make_plan(["a", "b"], []), make_record({}), tmp_path)
    assert list(answers) == ["a", "b"]
    assert answers["a"].status == "ok" and answers["b"].status == "missing"


# --- untrusted files in the answers folder ------------------------------------------------


def write_manifest(folder: Path, point: str, manifest) -> None:
    if isinstance(manifest, bytes):
        (folder / f"{point}.json").write_bytes(manifest)
    else:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (folder / f"{point}.json").write_text(text)


def load_end(folder: Path, name="x"):
    return load_answers(make_plan([name], []), make_record({}), folder)[name]


class _Trap:
    """Unpickling this creates a marker file: proves whether pickle ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    trap = _Trap()
    trap.marker = marker
    array = np.empty(1, dtype=object)
    array[0] = trap
    np.save(tmp_path / "end--x.npy", array, allow_pickle=True)
    write_manifest(tmp_path, "end", {"x": {"status": "ok", "file": "end--x.npy"}})
    answer = load_end(tmp_path)
    assert answer.status == "invalid"
    assert "not a numeric array" in answer.detail
    assert not marker.exists()
    # the trap itself works: a plain pickle load would have run it
    pickle.loads(pickle.dumps(trap))
    assert marker.exists()


def _write_npy(path: Path, shape, descr="<f8", data: bytes = b"", version=(1, 0)):
    with open(path, "wb") as f:
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        if version == (1, 0):
            np.lib.format.write_array_header_1_0(f, header)
        else:
            np.lib.format.write_array_header_2_0(f, header)
        f.write(data)


@pytest.mark.parametrize(
    "shape, descr, nbytes, fragment",
    [
        ((1000,), "<f8", 80, "does not match the file size"),  # header claims more than the file holds
        ((10,), "<f8", 800, "does not match the file size"),  # trailing bytes
        ((10,), "<f8", 0, "does not match the file size"),
        ((1 << 20,), "<f8", 0, "does not match the file size"),  # larger than max_bytes
        ((2,), "<U4", 32, "not a numeric array"),
        ((2,), "<c16", 32, "not a numeric array"),
        ((2,), "|O", 16, "not a numeric array"),
    ],
)
def test_bad_npy_headers_are_rejected(tmp_path, shape, descr, nbytes, fragment):
    path = tmp_path / "a.npy"
    _write_npy(path, shape, descr, b"\0" * nbytes)
    with pytest.raises(BadAnswerFile, match=fragment):
        load_npy(path, MAX)


def test_npy_header_bigger_than_file_is_invalid_answer(tmp_path):
    _write_npy(tmp_path / "end--x.npy", (1000,), data=b"\0" * 80)
    write_manifest(tmp_path, "end", {"x": {"status": "ok", "file": "end--x.npy"}})
    answer = load_end(tmp_path)
    assert answer.status == "invalid" and "does not match the file size" in answer.detail


@pytest.mark.parametrize("content", [b"", b"not an npy file at all", b"\x93NUMPY\x09\x00garbage"])
def test_garbage_npy_is_bad_answer_file(tmp_path, content):
    path = tmp_path / "a.npy"
    path.write_bytes(content)
    with pytest.raises(BadAnswerFile):
        load_npy(path, MAX)


def test_npy_file_over_limit_rejected_before_reading(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(2000))
    with pytest.raises(BadAnswerFile, match="more than the .* allowed"):
        load_npy(path, 8000)
    assert load_npy(path, 16000).shape == (2000,)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian, as another machine writes it
        np.array(2.5),  # 0-d: a scalar answer
        np.zeros((0, 3), dtype=np.float32),
        np.array([True, False, True]),
    ],
    ids=["float32", "fortran_order", "big_endian", "0-d", "empty", "bool"],
)
def test_npy_answers_load_as_numpy_loads_them(tmp_path, array):
    """Values, shape, dtype and a C-ordered, writable array of our own, as ``np.load`` gives."""
    path = tmp_path / "a.npy"
    np.save(path, array, allow_pickle=False)
    loaded, reference = load_npy(path, MAX), np.load(path, allow_pickle=False)
    assert loaded.dtype == reference.dtype and loaded.shape == reference.shape
    assert np.array_equal(loaded, reference)
    assert loaded.flags.c_contiguous and loaded.flags.writeable
    loaded[...] = 0  # changing it changes nothing on disk
    assert np.array_equal(np.load(path, allow_pickle=False), reference)


def test_npy_version_2_is_accepted(tmp_path):
    path = tmp_path / "a.npy"
    _write_npy(path, (2,), data=np.array([1.0, 2.0]).tobytes(), version=(2, 0))
    assert load_npy(path, MAX).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("shape, nbytes", [((2**32, 2**32), 0), ((-1, -8), 64)], ids=["overflow", "negative"])
def test_npy_header_with_overflowing_or_negative_shape_is_invalid(tmp_path, shape, nbytes):
    _write_npy(tmp_path / "end--x.npy", shape, data=b"\0" * nbytes)
    write_manifest(tmp_path, "end", {"x": {"status": "ok", "file": "end--x.npy"}})
    answer = load_end(tmp_path)
    assert answer.status == "invalid"


def test_fifo_in_answers_folder_does_not_hang(tmp_path):
    capture({"x": np.ones(2)}, {"x": "x"}, str(tmp_path), FINAL_POINT, MAX)
    npy = tmp_path / "end--x.npy"
    npy.unlink()
    os.mkfifo(npy)
    result = []
    thread = threading.Thread(target=lambda: result.append(load_end(tmp_path)), daemon=True)
    thread.start()
    thread.join(1)
    hung = thread.is_alive()
    if hung:  # release the blocked reader so no thread is left behind
        os.close(os.open(npy, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
    assert not hung
    assert result[0].status == "invalid"


@pytest.mark.parametrize(
    "manifest, status, fragment",
    [
        ("{not json", "not_run", "unreadable"),
        (b"\xff\xfe{}", "not_run", "unreadable"),
        ([{"status": "ok"}], "not_run", "not an object"),
        ("null", "not_run", "not an object"),
        ({"x": {"status": "ok", "file": "end--x.npy", "extra": 1}}, "not_run", "unreadable"),
        ({"x": {"status": "correct"}}, "not_run", "unreadable"),
        ({"x": "ok"}, "not_run", "unreadable"),
        ("[" * 100000, "not_run", "unreadable"),
        ({"y": {"status": "ok", "file": "end--y.npy"}}, "invalid", "missing from the capture manifest"),
        ({"x": {"status": "ok", "file": "../../etc/passwd"}}, "invalid", "unexpected file name"),
        ({"x": {"status": "ok", "file": "/etc/passwd"}}, "invalid", "unexpected file name"),
        ({"x": {"status": "ok", "file": "end--y.npy"}}, "invalid", "unexpected file name"),
        ({"x": {"status": "ok"}}, "invalid", "unexpected file name"),
        ({"x": {"status": "ok", "file": "end--x.npy"}}, "invalid", "No such file"),
    ],
)
def test_hostile_manifests_do_not_raise(tmp_path, manifest, status, fragment):
    np.save(tmp_path / "end--y.npy", np.ones(3))
    write_manifest(tmp_path, "end", manifest)
    answer = load_end(tmp_path)
    assert answer.status == status
    assert fragment in answer.detail
    assert answer.value is None


def test_manifest_can_claim_any_failure_status(tmp_path):
    write_manifest(tmp_path, "end", {"x": {"status": "too_large", "detail": "is big", "type": "numpy.ndarray"}})
    answer = load_end(tmp_path)
    assert (answer.status, answer.detail, answer.type_name) == ("too_large", "is big", "numpy.ndarray")


def test_manifest_over_one_mib_is_refused(tmp_path):
    np.save(tmp_path / "end--x.npy", np.ones(3))
    manifest = {"x": {"status": "ok", "file": "end--x.npy", "detail": "p" * MANIFEST_LIMIT}}
    write_manifest(tmp_path, "end", manifest)
    assert MANIFEST_LIMIT == 1 << 20 and (tmp_path / "end.json").stat().st_size > MANIFEST_LIMIT
    answer = load_end(tmp_path)
    assert (
        answer.status == "not_run"
        and "manifest is unusable" in answer.detail
        and "more than the 1048576 allowed" in answer.detail
    )


def test_manifest_that_is_a_directory_is_not_run(tmp_path):
    (tmp_path / "end.json").mkdir()
    assert load_end(tmp_path).status == "not_run"


def test_npy_answer_that_is_a_directory_is_invalid(tmp_path):
    (tmp_path / "end--x.npy").mkdir()
    write_manifest(tmp_path, "end", {"x": {"status": "ok", "file": "end--x.npy"}})
    assert load_end(tmp_path).status == "invalid"


def test_npy_answer_replaced_by_a_bigger_one_is_refused(tmp_path):
    capture({"x": np.ones(2)}, {"x": "x"}, str(tmp_path), FINAL_POINT, MAX)
    np.save(tmp_path / "end--x.npy", np.ones(MAX // 8 + 1024))  # over max_answer_bytes
    answer = load_end(tmp_path)
    assert answer.status == "invalid" and "allowed" in answer.detail and "more than the" in answer.detail


# --- loader_source / call_source: how the kernel runs the capture -------------------------


def test_loader_and_call_source_in_a_fresh_namespace(tmp_path):
    ns = {}
    exec(loader_source(), ns)
    module = ns[capture_module.MODULE_NAME]
    assert module.__file__ == capture_module.__file__
    assert module is not capture_module  # a separate copy: the grader package is not imported
    assert {k for k in ns if not k.startswith("__")} == {"_grader_capture"}  # helper names removed

    exec(
        "import numpy as np\nimg_tensor = np.ones((1, 4, 4, 1))\nclass M:\n"
        "    def get_weights(self): return [np.full((3, 3, 1, 1), 2.0), np.zeros(1)]\nmodel = M()\n",
        ns,
    )
    answers = {"img_tensor": "img_tensor", "random_kernel": "model.get_weights()[0]", "gone": "gone"}
    exec(call_source(answers, tmp_path, point_name(3), MAX), ns)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cell0003--img_tensor.npy",
        "cell0003--random_kernel.npy",
        "cell0003.json",
    ]
    plan = make_plan(list(answers), [(3, answers)], final={})
    loaded = load_answers(plan, make_record({3: "ok"}), tmp_path)
    assert loaded["img_tensor"].value.shape == (1, 4, 4, 1)
    assert loaded["random_kernel"].value.tolist() == np.full((3, 3, 1, 1), 2.0).tolist()
    assert loaded["gone"].status == "missing"


def test_call_source_is_a_single_literal_call(tmp_path):
    folder = tmp_path / 'it\'s "quoted"'
    folder.mkdir()
    source = call_source({"x": "x"}, folder, "end", 123.9)
    assert source.count("\n") == 1 and source.startswith("_grader_capture.capture(globals(), ")
    assert source.rstrip().endswith(", 'end', 123, {})")
    ns = {}
    exec(loader_source(), ns)
    ns["x"] = [1, 2]
    exec(source, ns)
    assert (folder / "end--x.npy").is_file() and (folder / "end.json").is_file()


def test_capture_module_is_independent_of_the_grader_package():
    source = Path(capture_module.__file__).read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert set(imports) <= {"json", "os", "numpy"}


# --- model weights: candidates from every Keras model, whatever its name ---------------


class _FakeKerasModel:
    """Stands in for a Keras model: the capture module only asks for get_weights()."""

    def __init__(self, kernel, bias):
        self.weights = [kernel, bias]

    def get_weights(self):
        return self.weights


_FakeKerasModel.__module__ = "keras.src.models.sequential"


def test_model_weights_are_captured_from_every_keras_model(tmp_path):
    k1, k2 = np.full((3, 3, 1, 1), 1.0), np.full((3, 3, 1, 1), 2.0)
    ns = {
        "conv": _FakeKerasModel(k1, np.zeros(1)),
        "other": _FakeKerasModel(k2, np.ones(1)),
        "not_a_model": object(),
        "_hidden": _FakeKerasModel(k2, np.ones(1)),
    }
    capture(ns, {"kernel": "model.get_weights()[0]"}, str(tmp_path), "cell0003", MAX, {"kernel": 0, "bias": 1})
    plan = ExecutionPlan(
        answer_names=["kernel", "bias"],
        steps=[Step(3, "", {"kernel": "model.get_weights()[0]"}, {"kernel": 0, "bias": 1})],
        final_captures={},
        notices={},
        data_files=[],
        cell_timeout=60,
        notebook_timeout=300,
        max_answer_bytes=MAX,
        final_weights={"kernel": 0, "bias": 1},
    )
    loaded = load_answers(plan, make_record({3: "ok"}), tmp_path)
    kernel, bias = loaded["kernel"], loaded["bias"]
    assert kernel.status == "missing" and "name 'model' is not defined" in kernel.detail  # the expression failed
    assert sorted(kernel.candidates) == ["conv", "other"] == sorted(bias.candidates)
    assert kernel.candidates["other"].tolist() == k2.tolist() and bias.candidates["conv"].tolist() == [0.0]


def test_a_planted_candidate_file_is_not_trusted(tmp_path):
    capture({"m": _FakeKerasModel(np.ones((3, 3, 1, 1)), np.zeros(1))}, {}, str(tmp_path), "end", MAX, {"kernel": 0})
    manifest = json.loads((tmp_path / "end.json").read_text())
    manifest["kernel"]["candidates"].update({"../x": "../x.npy", "z": "end--kernel@m.npy"})
    (tmp_path / "end.json").write_text(json.dumps(manifest))
    (tmp_path / "end--kernel@m.npy").unlink()
    (tmp_path / "end--kernel@m.npy").symlink_to("/etc/passwd")
    plan = make_plan(["kernel"], [], final={})
    plan = ExecutionPlan(**{**plan.__dict__, "final_weights": {"kernel": 0}})
    assert load_answers(plan, make_record({}), tmp_path)["kernel"].candidates == {}
