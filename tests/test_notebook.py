"""grader.notebook: reading an untrusted submission file, and planning which
cells run and where each answer is captured."""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from grader.errors import InvalidSubmission
from grader.execution.plan import cell_tags, plan_execution, read_submission
from grader.model.assignment import load_assignment

ROOT = Path(__file__).resolve().parents[1]
MAX = 10 * 2**20


@pytest.fixture(scope="module")
def spec():
    return load_assignment(ROOT / "assignments" / "conv2d").spec


def write_nb(path: Path, cells, **metadata) -> Path:
    nb = new_notebook(cells=cells, metadata=metadata)
    nbformat.write(nb, str(path))
    return path


def code(source, *tags):
    return new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def md(source, *tags):
    return new_markdown_cell(source, metadata={"tags": list(tags)} if tags else {})


def valid_notebook_dict():
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "id": "a1", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": None}
        ],
    }


# --- read_submission: errors ---------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "sub.ipynb"


def _directory(tmp_path):
    path = tmp_path / "sub.ipynb"
    path.mkdir()
    return path


def _symlink(tmp_path):
    real = tmp_path / "real.ipynb"
    real.write_text(json.dumps(valid_notebook_dict()))
    link = tmp_path / "sub.ipynb"
    link.symlink_to(real)
    return link


def _broken_symlink(tmp_path):
    link = tmp_path / "sub.ipynb"
    link.symlink_to(tmp_path / "nowhere.ipynb")
    return link


def _bytes(data: bytes):
    def make(tmp_path):
        path = tmp_path / "sub.ipynb"
        path.write_bytes(data)
        return path

    return make


def _json(value):
    return _bytes(json.dumps(value).encode())


def _cell_without_type():
    nb = valid_notebook_dict()
    del nb["cells"][0]["cell_type"]
    return _json(nb)


def _cell_with_bad_type():
    nb = valid_notebook_dict()
    nb["cells"][0]["cell_type"] = "heading"
    return _json(nb)


def _cell_not_an_object():
    nb = valid_notebook_dict()
    nb["cells"].append("print(1)")
    return _json(nb)


def _cells_not_a_list():
    nb = valid_notebook_dict()
    nb["cells"] = {"0": nb["cells"][0]}
    return _json(nb)


def _truncated():
    text = json.dumps(valid_notebook_dict(), indent=1)
    return _bytes(text[: len(text) // 2].encode())


ERROR_CASES = [
    ("missing_file", _missing, "sub.ipynb: file not found"),
    ("directory", _directory, "not a regular file"),
    ("symlink_to_real_notebook", _symlink, "is a symbolic link"),
    ("broken_symlink", _broken_symlink, "is a symbolic link"),
    ("empty_file", _bytes(b""), "the file is empty"),
    ("whitespace_only", _bytes(b"  \n\t\n"), "the file is empty"),
    ("pdf_bytes", _bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), "byte 0xe2 at offset 10 is not UTF-8 text"),
    ("zip_bytes", _bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff"), "is not UTF-8 text"),
    ("latin1_text", _bytes('{"cells": [], "x": "caf\xe9"}'.encode("latin-1")), "is not UTF-8 text"),
    ("truncated_json", _truncated(), "looks truncated"),
    ("truncated_after_open_brace", _bytes(b'{"cells": ['), "looks truncated"),
    ("invalid_json", _bytes(b'{"cells": [], oops}'), "invalid JSON at line 1"),
    ("json_list", _json([1, 2, 3]), "valid JSON but not a Jupyter notebook"),
    ("json_object_without_cells", _json({"a": 1}), "valid JSON but not a Jupyter notebook"),
    ("json_string", _json("cells"), "valid JSON but not a Jupyter notebook"),
    ("deeply_nested_list", _bytes(b"[" * 100000), "nested too deeply"),
    (
        "deeply_nested_in_notebook",
        _bytes(b'{"cells": [], "metadata": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
        "nested too deeply",
    ),
    ("cell_without_cell_type", _cell_without_type(), "cell 0 has no valid cell_type"),
    ("cell_with_unknown_type", _cell_with_bad_type(), "cell 0 has no valid cell_type"),
    ("cell_not_an_object", _cell_not_an_object(), "not a readable notebook"),
    ("cells_not_a_list", _cells_not_a_list(), "not a readable notebook"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_read_submission_rejects(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(InvalidSubmission) as info:
        read_submission(path, MAX)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("sub.ipynb: ")  # names the file the student uploaded, not a server path
    assert str(tmp_path) not in message


def test_read_submission_rejects_file_over_max_bytes(tmp_path):
    path = write_nb(tmp_path / "big.ipynb", [code("x = 1  # " + "a" * 3_000_000)])
    size = path.stat().st_size
    with pytest.raises(InvalidSubmission) as info:
        read_submission(path, 2 * 2**20)
    message = str(info.value)
    assert f"{size / 2**20:.1f} MiB, more than the 2 MiB allowed" in message
    assert "clear the outputs" in message
    assert read_submission(path, size).size == size  # exactly at the limit is fine


def test_read_submission_accepts_string_path_and_records_digest(tmp_path):
    import hashlib

    path = write_nb(tmp_path / "ok.ipynb", [code("x = 1", "answer:x"), md("# hi")], grader={"assignment": "conv2d"})
    sub = read_submission(str(path), MAX)
    raw = path.read_bytes()
    assert sub.sha256 == hashlib.sha256(raw).hexdigest()
    assert sub.size == len(raw)
    assert sub.path == path
    assert [c.cell_type for c in sub.notebook.cells] == ["code", "markdown"]
    assert cell_tags(sub.notebook.cells[0]) == ["answer:x"]
    assert sub.assignment_hint == "conv2d"


def test_assignment_hint_absent_or_malformed(tmp_path):
    assert read_submission(write_nb(tmp_path / "a.ipynb", [code("1")]), MAX).assignment_hint is None
    sub = read_submission(write_nb(tmp_path / "b.ipynb", [code("1")], grader={"assignment": 3}), MAX)
    assert sub.assignment_hint is None


def test_read_submission_joins_list_sources(tmp_path):
    nb = valid_notebook_dict()
    nb["cells"][0]["source"] = ["x = 1\n", "y = 2\n"]
    path = tmp_path / "sub.ipynb"
    path.write_text(json.dumps(nb))
    assert read_submission(path, MAX).notebook.cells[0].source == "x = 1\ny = 2\n"


def test_read_submission_converts_nbformat_v3(tmp_path):
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "metadata": {},
                "cells": [
                    {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "text"]},
                    {
                        "cell_type": "code",
                        "language": "python",
                        "collapsed": False,
                        "metadata": {},
                        "input": ["import numpy as np\n", "img_tensor = np.zeros((1, 2, 2, 1))"],
                        "outputs": [],
                        "prompt_number": 1,
                    },
                    {
                        "cell_type": "code",
                        "language": "python",
                        "collapsed": False,
                        "metadata": {"tags": ["answer:x"]},
                        "input": "x = 2",
                        "outputs": [],
                        "prompt_number": 2,
                    },
                ],
            }
        ],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3))
    nb = read_submission(path, MAX).notebook
    assert nb.nbformat == 4
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[0].source == "# Title\ntext"
    assert nb.cells[1].source == "import numpy as np\nimg_tensor = np.zeros((1, 2, 2, 1))"
    assert nb.cells[2].source == "x = 2"
    assert cell_tags(nb.cells[2]) == ["answer:x"]


@pytest.mark.parametrize(
    "metadata, tags",
    [
        ({}, []),
        ({"tags": ["a", "answer:x"]}, ["a", "answer:x"]),
        ({"tags": "answer:x"}, []),
        ({"tags": ["answer:x", 3, None]}, ["answer:x"]),
        ("not a dict", []),
    ],
)
def test_cell_tags_tolerates_malformed_metadata(metadata, tags):
    assert cell_tags({"metadata": metadata}) == tags


# --- plan_execution -------------------------------------------------------------------


def plan_for(tmp_path, spec, cells, **options):
    path = write_nb(tmp_path / "sub.ipynb", cells)
    return plan_execution(read_submission(path, MAX), spec, [], **options)


def tagged_cells():
    return [
        md("# Intro"),
        code("import numpy as np", "setup"),
        code(""),
        code("img_tensor = img.reshape((1, 512, 512, 1))", "answer:img_tensor"),
        code("model = make()\nrandom_output = model.predict(img_tensor)", "answer:random_output"),
        code("   \n"),
        code("average_output = model.predict(img_tensor)", "answer:average_output"),
        code("", "answer:same_output"),  # empty but tagged: still a capture point
    ]


def test_plan_steps_only_for_code_cells_with_code_or_tags(tmp_path, spec):
    plan = plan_for(tmp_path, spec, tagged_cells())
    assert [s.cell_index for s in plan.steps] == [1, 3, 4, 6, 7]
    assert [s.source for s in plan.steps][:2] == ["import numpy as np", "img_tensor = img.reshape((1, 512, 512, 1))"]


def test_plan_captures_after_the_tagged_cell(tmp_path, spec):
    plan = plan_for(tmp_path, spec, tagged_cells())
    captures = {s.cell_index: s.captures for s in plan.steps}
    assert captures[1] == {}
    assert captures[3] == {"img_tensor": "img_tensor"}
    assert captures[6] == {"average_output": "average_output"}
    assert captures[7] == {"same_output": "same_output"}
    assert plan.notices == {}
    assert plan.answer_names == list(spec.answers)


def test_plan_expression_answers_are_captured_after_their_cell_only(tmp_path, spec):
    plan = plan_for(tmp_path, spec, tagged_cells())
    step = next(s for s in plan.steps if s.cell_index == 4)
    assert step.captures == {
        "random_output": "random_output",
        "random_kernel": "model.get_weights()[0]",
        "random_bias": "model.get_weights()[1]",
    }
    assert set(plan.final_captures) == {"img_tensor", "random_output", "average_output", "same_output"}
    assert "random_kernel" not in plan.final_captures and "random_bias" not in plan.final_captures
    assert plan.final_captures["img_tensor"] == "img_tensor"


def test_plan_limits_from_spec_and_overrides(tmp_path, spec):
    plan = plan_for(tmp_path, spec, tagged_cells())
    assert (plan.cell_timeout, plan.notebook_timeout) == (60, 300)
    assert plan.max_answer_bytes == 64 * 2**20
    assert plan.data_files == []
    plan = plan_for(tmp_path, spec, tagged_cells(), cell_timeout=4, notebook_timeout=8.5)
    assert (plan.cell_timeout, plan.notebook_timeout) == (4, 8.5)


def test_plan_passes_data_files_through(tmp_path, spec):
    path = write_nb(tmp_path / "sub.ipynb", tagged_cells())
    data = [tmp_path / "ascent.npy"]
    assert plan_execution(read_submission(path, MAX), spec, data).data_files == data


def test_plan_tag_on_markdown_cell_gives_notice(tmp_path, spec):
    cells = tagged_cells()
    cells[6] = md("average_output = model.predict(img_tensor)", "answer:average_output")
    plan = plan_for(tmp_path, spec, cells)
    assert 6 not in [s.cell_index for s in plan.steps]
    notice = " ".join(plan.notices["average_output"])
    assert "'answer:average_output' (cell 7) is a markdown cell" in notice
    assert "never ran" in notice
    assert "average_output" in plan.final_captures  # still taken from the end of the notebook
    assert set(plan.notices) == {"average_output"}


def test_plan_tag_on_raw_cell_gives_notice(tmp_path, spec):
    cells = tagged_cells()
    cells[3] = new_raw_cell("img_tensor = 1", metadata={"tags": ["answer:img_tensor"]})
    plan = plan_for(tmp_path, spec, cells)
    assert "is a raw cell" in plan.notices["img_tensor"][0]


def test_plan_missing_tag_without_assignment(tmp_path, spec):
    cells = tagged_cells()
    cells[7] = code("print('forgot')")
    plan = plan_for(tmp_path, spec, cells)
    assert plan.notices["same_output"] == [
        "no code cell is tagged 'answer:same_output', so its value was taken at the end of the notebook"
    ]
    assert "same_output" in plan.final_captures


def test_plan_missing_tag_for_expression_answer_cannot_be_captured(tmp_path, spec):
    cells = tagged_cells()
    cells[4] = code("model = make()\npred = model.predict(img_tensor)")  # no tag, no random_output assignment
    plan = plan_for(tmp_path, spec, cells)
    assert not any("random_kernel" in s.captures for s in plan.steps)
    assert "it could not be captured" in plan.notices["random_kernel"][0]
    assert "its value was taken at the end" in plan.notices["random_output"][0]


def test_plan_deleted_tags_capture_after_last_assigning_cell(tmp_path, spec):
    cells = [
        code("import numpy as np"),
        code("img_tensor = img.reshape((1, 512, 512, 1))"),
        code("img_tensor = img.reshape((1, 512, 512, 1)).astype('float32')"),  # the last assignment wins
        code("model = make()\nrandom_output = model.predict(img_tensor)"),
        code("print(random_output.shape)"),
        code("average_output: np.ndarray = model.predict(img_tensor)"),  # annotated assignment
        code("model = make_same()\nsame_output=model.predict(img_tensor)"),
        code("model = something_else()"),
    ]
    plan = plan_for(tmp_path, spec, cells)
    captures = {s.cell_index: s.captures for s in plan.steps}
    assert captures[1] == {} and captures[4] == {} and captures[7] == {}
    assert captures[2] == {"img_tensor": "img_tensor"}
    assert set(captures[3]) == {"random_output", "random_kernel", "random_bias"}
    assert captures[5] == {"average_output": "average_output"}
    assert captures[6] == {"same_output": "same_output"}
    assert plan.notices["img_tensor"] == [
        "no cell is tagged 'answer:img_tensor'; its value was taken after cell 3, the last cell that assigns img_tensor"
    ]
    assert "taken after cell 4" in plan.notices["random_kernel"][0]


@pytest.mark.parametrize(
    "source",
    [
        "img_tensor == 1",
        "assert img_tensor == 1",
        "print(img_tensor)",
        "img_tensor2 = 1",
        "my_img_tensor = 1",
        "# img_tensor = 1 is what you should write",
        "img_tensor.shape = (1, 512, 512, 1)",
    ],
)
def test_plan_only_bindings_of_the_name_are_inferred(tmp_path, spec, source):
    cells = [code("img_tensor = load()"), code(source)]
    plan = plan_for(tmp_path, spec, cells)
    captures = {s.cell_index: s.captures for s in plan.steps}
    assert captures[0] == {"img_tensor": "img_tensor"}
    assert captures[1] == {}


def test_plan_a_present_tag_disables_inference(tmp_path, spec):
    cells = [code("img_tensor = 1", "answer:img_tensor"), code("img_tensor = 2")]
    plan = plan_for(tmp_path, spec, cells)
    assert {s.cell_index: s.captures for s in plan.steps} == {0: {"img_tensor": "img_tensor"}, 1: {}}
    assert "img_tensor" not in plan.notices


def test_plan_same_tag_on_two_cells_captures_after_both(tmp_path, spec):
    cells = [code("img_tensor = 1", "answer:img_tensor"), code("img_tensor = 2", "answer:img_tensor")]
    plan = plan_for(tmp_path, spec, cells)
    assert [s.captures for s in plan.steps] == [{"img_tensor": "img_tensor"}] * 2


def test_plan_unknown_answer_tags_are_ignored(tmp_path, spec):
    cells = [code("x = 1", "answer:x", "answer:"), code("img_tensor = 1", "answer:img_tensor", "exercise")]
    plan = plan_for(tmp_path, spec, cells)
    assert [s.captures for s in plan.steps] == [{}, {"img_tensor": "img_tensor"}]


def test_plan_empty_notebook(tmp_path, spec):
    plan = plan_for(tmp_path, spec, [])
    assert plan.steps == []
    assert set(plan.notices) == set(spec.answers)
    assert set(plan.final_captures) == {"img_tensor", "random_output", "average_output", "same_output"}


def test_plan_deleted_tags_cell_assigning_two_answers(tmp_path, spec):
    cells = [
        code("img_tensor = img.reshape((1, 512, 512, 1))"),
        code(
            "model = make()\nrandom_output = model.predict(img_tensor)\n"
            "model.set_weights(ones)\naverage_output = model.predict(img_tensor)"
        ),
        code("same_output = make_same().predict(img_tensor)"),
    ]
    plan = plan_for(tmp_path, spec, cells)
    captures = {s.cell_index: s.captures for s in plan.steps}
    assert set(captures[1]) == {"random_output", "random_kernel", "random_bias", "average_output"}
