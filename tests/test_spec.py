"""grader.model.spec and grader.assignment: a typo or an inconsistency in an
assignment.toml is caught when it is loaded, with the file and the key named."""

from pathlib import Path

import pytest

from grader.errors import AssignmentNotFound, GraderError, SpecError
from grader.model.assignment import available_assignments, load_assignment
from grader.model.spec import Conv2D, Reshape, load_spec

ROOT = Path(__file__).resolve().parents[1]

HEADER = """
title = "Tiny"
version = "1"
template = "tiny.ipynb"
solution = "tiny.ipynb"
"""

MINIMAL = (
    HEADER
    + """
[answers.x]
description = "the x"

[[checks]]
name = "x is finite"
answer = "x"
points = 2
kind = "finite"
"""
)


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "assignment.toml"
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(tmp_path, text: str) -> str:
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message  # every spec error names the file
    return message


def test_minimal_spec_loads_with_defaults(tmp_path):
    spec = load_spec(write_spec(tmp_path, MINIMAL))
    assert spec.title == "Tiny" and spec.version == "1"
    assert list(spec.answers) == ["x"]
    assert spec.max_score == 2.0
    assert spec.capture_cell("x") == "x" and spec.expression("x") == "x"
    assert spec.tolerance.rtol == 1e-5 and spec.tolerance.atol == 1e-3
    assert spec.limits.cell_timeout == 60 and spec.limits.notebook_timeout == 300
    assert spec.data == []


def test_answer_cell_and_expression(tmp_path):
    text = (
        MINIMAL
        + """
[answers.k]
cell = "x"
expression = "model.get_weights()[0]"
"""
    )
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.capture_cell("k") == "x"
    assert spec.expression("k") == "model.get_weights()[0]"


def test_compute_table_is_parsed_by_op(tmp_path):
    text = (
        MINIMAL
        + """
[[checks]]
name = "x conv"
answer = "x"
points = 1
kind = "compute"
compute = { op = "conv2d", input = "x", kernel = 1, strides = [2, 1], padding = "same" }

[[checks]]
name = "x ref"
answer = "x"
points = 1
kind = "reference"
compute = { op = "reshape", input = "file:data/a.npy", shape = [1, 2] }
"""
    )
    spec = load_spec(write_spec(tmp_path, text))
    conv, reshape = spec.checks[1].compute, spec.checks[2].compute
    assert isinstance(conv, Conv2D) and conv.strides == (2, 1) and conv.kernel == 1.0 and conv.padding == "same"
    assert isinstance(reshape, Reshape) and reshape.input == "file:data/a.npy"
    assert spec.max_score == 4.0


@pytest.mark.parametrize(
    "extra, key",
    [
        ("rtoll = 1e-5", "checks.0.rtoll"),
        ('hints = "typo"', "checks.0.hints"),
    ],
)
def test_unknown_key_in_check_names_file_and_key(tmp_path, extra, key):
    message = spec_error(tmp_path, MINIMAL + extra + "\n")
    assert f"{key}: unknown key" in message


@pytest.mark.parametrize(
    "text, key",
    [
        (MINIMAL.replace('version = "1"', 'version = "1"\nauthor = "me"'), "author"),
        (MINIMAL + "\n[tolerance]\nrtol = 1e-5\natoll = 1\n", "tolerance.atoll"),
        (MINIMAL + "\n[limits]\ncell_timout = 5\n", "limits.cell_timout"),
        (MINIMAL.replace('description = "the x"', 'descripton = "the x"'), "answers.x.descripton"),
    ],
)
def test_unknown_key_elsewhere_names_the_key(tmp_path, text, key):
    message = spec_error(tmp_path, text)
    assert f"{key}: unknown key" in message


def test_unknown_key_in_compute_table(tmp_path):
    text = (
        MINIMAL
        + """
[[checks]]
name = "c"
answer = "x"
points = 1
kind = "compute"
compute = { op = "conv2d", input = "x", kernel = "x", stride = [2, 1] }
"""
    )
    message = spec_error(tmp_path, text)
    assert "checks.1.compute" in message and "stride: unknown key" in message


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL + "\n[[checks]\n",
        MINIMAL + '\nname = "duplicate top-level key"\ntitle = "again"\n',
        'title = "unterminated\n',
    ],
)
def test_invalid_toml_names_the_file(tmp_path, text):
    message = spec_error(tmp_path, text)
    assert "not valid TOML" in message


def test_non_utf8_spec_is_spec_error(tmp_path):
    path = tmp_path / "assignment.toml"
    path.write_bytes(MINIMAL.encode() + b"\n# \xff\xfe\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(path)


def test_missing_spec_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="spec file not found") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_shape_check_without_shape(tmp_path):
    message = spec_error(tmp_path, MINIMAL.replace('kind = "finite"', 'kind = "shape"'))
    assert "checks.0" in message and "kind='shape' needs 'shape'" in message


def test_compute_check_without_compute_table(tmp_path):
    message = spec_error(tmp_path, MINIMAL.replace('kind = "finite"', 'kind = "compute"'))
    assert "kind='compute' needs a [checks.compute] table" in message


def test_check_referencing_unknown_answer(tmp_path):
    message = spec_error(tmp_path, MINIMAL.replace('answer = "x"', 'answer = "y"'))
    assert "unknown answer 'y'" in message and "['x']" in message and "'x is finite'" in message


@pytest.mark.parametrize(
    "compute, unknown",
    [
        ('{ op = "conv2d", input = "img", kernel = 1.0 }', "img"),
        ('{ op = "conv2d", input = "x", kernel = "kern" }', "kern"),
        ('{ op = "conv2d", input = "x", kernel = 1.0, bias = "b" }', "b"),
        ('{ op = "maxpool2d", input = "pooled" }', "pooled"),
        ('{ op = "reshape", input = "raw", shape = [1] }', "raw"),
    ],
)
def test_compute_table_referencing_unknown_answer(tmp_path, compute, unknown):
    text = (
        MINIMAL
        + f"""
[[checks]]
name = "c"
answer = "x"
points = 1
kind = "compute"
compute = {compute}
"""
    )
    message = spec_error(tmp_path, text)
    assert f"compute refers to unknown answer {unknown!r}" in message
    assert "checks[1] ('c')" in message


def test_compute_file_sources_are_not_answers(tmp_path):
    text = (
        MINIMAL
        + """
[[checks]]
name = "c"
answer = "x"
points = 1
kind = "compute"
compute = { op = "conv2d", input = "file:data/img.npy", kernel = "x", bias = 0.5 }
"""
    )
    assert load_spec(write_spec(tmp_path, text)).checks[1].compute.input == "file:data/img.npy"


def test_duplicate_check_names(tmp_path):
    text = (
        MINIMAL
        + """
[[checks]]
name = "x is finite"
answer = "x"
points = 1
kind = "finite"
"""
    )
    message = spec_error(tmp_path, text)
    assert "check names must be unique" in message and "'x is finite'" in message


@pytest.mark.parametrize("name", ['"my-answer"', '"2x"', '"has space"'])
def test_answer_name_must_be_identifier(tmp_path, name):
    text = MINIMAL + f"\n[answers.{name}]\n"
    message = spec_error(tmp_path, text)
    assert "answer names must be Python identifiers" in message
    assert name.strip('"') in message


@pytest.mark.parametrize(
    "old, new, fragment",
    [
        ("points = 2", "points = -1", "checks.0.points"),
        ('kind = "finite"', 'kind = "exact"', "checks.0.kind"),
        ('kind = "finite"', 'kind = "finite"\ndtype = "complex"', "checks.0.dtype"),
        ('title = "Tiny"', "", "title"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, old, new, fragment):
    message = spec_error(tmp_path, MINIMAL.replace(old, new))
    assert f"  {fragment}:" in message


def test_no_checks_is_an_error(tmp_path):
    text = HEADER + "checks = []\n[answers.x]\n"
    message = spec_error(tmp_path, text)
    assert "checks:" in message


def test_diagnosis_condition_must_be_complete(tmp_path):
    text = (
        MINIMAL
        + """
[[checks.diagnoses]]
when = "scaled"
message = "scaled"
"""
    )
    message = spec_error(tmp_path, text)
    assert "checks.0.diagnoses.0" in message and "when='scaled' needs 'factor'" in message


def test_spec_error_is_a_grader_error():
    assert issubclass(SpecError, GraderError)
    assert SpecError.exit_code == 3


# --- assignment.load_assignment ---------------------------------------------------


def make_assignment(root: Path, name: str, spec_text: str = MINIMAL, template: bool = True) -> Path:
    folder = root / "assignments" / name
    folder.mkdir(parents=True)
    write_spec(folder, spec_text)
    if template:
        (folder / "tiny.ipynb").write_text("{}", encoding="utf-8")
    return folder


def test_load_assignment_by_name_with_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = make_assignment(tmp_path, "tiny")
    assignment = load_assignment("tiny", root=tmp_path)
    assert assignment.name == "tiny"
    assert assignment.folder == folder
    assert assignment.template_path == folder / "tiny.ipynb"
    assert assignment.solution_path == tmp_path / "solutions" / "tiny" / "tiny.ipynb"
    assert len(assignment.spec_sha256()) == 64


def test_unknown_assignment_lists_known_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_assignment(tmp_path, "beta")
    make_assignment(tmp_path, "alpha")
    (tmp_path / "assignments" / "not_an_assignment").mkdir()  # no spec: not listed
    assert available_assignments(tmp_path) == ["alpha", "beta"]
    with pytest.raises(AssignmentNotFound) as info:
        load_assignment("gamma", root=tmp_path)
    message = str(info.value)
    assert "unknown assignment 'gamma'" in message
    assert "known assignments: alpha, beta" in message
    assert "not_an_assignment" not in message


def test_unknown_assignment_with_no_assignments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssignmentNotFound, match=r"known assignments: none"):
        load_assignment("conv2d", root=tmp_path)


def test_missing_data_file_is_spec_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = MINIMAL.replace('solution = "tiny.ipynb"', 'solution = "tiny.ipynb"\ndata = ["data/missing.npy"]')
    folder = make_assignment(tmp_path, "tiny", text)
    with pytest.raises(SpecError) as info:
        load_assignment("tiny", root=tmp_path)
    message = str(info.value)
    assert "file named in the spec is missing" in message
    assert str(folder / "data" / "missing.npy") in message
    assert str(folder / "assignment.toml") in message
    # once the file exists, it loads
    (folder / "data").mkdir()
    (folder / "data" / "missing.npy").write_bytes(b"")
    assert load_assignment("tiny", root=tmp_path).data_files == [folder / "data" / "missing.npy"]


def test_missing_template_is_spec_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_assignment(tmp_path, "tiny", template=False)
    with pytest.raises(SpecError, match="file named in the spec is missing.*tiny.ipynb"):
        load_assignment("tiny", root=tmp_path)


def test_invalid_spec_through_load_assignment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_assignment(tmp_path, "tiny", MINIMAL + "rtoll = 1e-5\n")
    with pytest.raises(SpecError, match=r"checks\.0\.rtoll: unknown key"):
        load_assignment("tiny", root=tmp_path)


def test_load_assignment_by_folder_path(tmp_path):
    folder = make_assignment(tmp_path, "tiny")
    assignment = load_assignment(folder)
    assert assignment.name == "tiny" and assignment.spec.max_score == 2.0
    assert assignment.solution_path == tmp_path / "solutions" / "tiny" / "tiny.ipynb"


def test_real_conv2d_spec_loads_and_totals_ten_points():
    assignment = load_assignment(ROOT / "assignments" / "conv2d")
    spec = assignment.spec
    assert spec.max_score == 10
    assert sum(c.points for c in spec.checks) == 10
    assert set(spec.answers) == {
        "img_tensor",
        "random_output",
        "random_kernel",
        "random_bias",
        "average_output",
        "same_output",
    }
    assert spec.capture_cell("random_kernel") == "random_output"
    assert spec.expression("random_kernel") == "model.get_weights()[0]"
    assert [d.name for d in assignment.data_files] == ["ascent.npy"]
    assert assignment.template_path.is_file()
    assert len({c.name for c in spec.checks}) == len(spec.checks) == 8


def test_real_conv2d_spec_loads_by_name_from_project_root():
    assert load_assignment("conv2d", root=ROOT).spec.max_score == 10
