"""The command line as instructors and students use it: output, files, exit codes."""

import json
import shutil
import subprocess
import sys

import jsonschema
import pytest
from conftest import FIXTURES, ROOT

from grader.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_answers_without_importing_tensorflow():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from grader.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "assert 'tensorflow' not in sys.modules and 'nbclient' not in sys.modules",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "grade" in proc.stdout and "batch" in proc.stdout


def test_grade_prints_result_json_valid_against_schema(capsys, references):
    code, out, _ = run_cli(capsys, "grade", FIXTURES / "correct.ipynb", "--assignment", "conv2d")
    assert code == 0
    result = json.loads(out)
    assert result["score"] == 10 and result["max_score"] == 10
    _, schema_out, _ = run_cli(capsys, "schema")
    jsonschema.validate(result, json.loads(schema_out))


def test_check_names_the_mistake_and_exits_1_below_full_marks(capsys, references, tmp_path):
    # no --assignment: taken from the notebook's metadata
    html = tmp_path / "feedback.html"
    code, out, _ = run_cli(capsys, "check", FIXTURES / "swapped_strides.ipynb", "--html", html)
    assert code == 1
    assert f"Feedback with pictures: {html}" in out
    page = html.read_text()
    assert "The strides are swapped" in page and page.count("data:image/png;base64,") >= 3
    assert "5 / 10 points" in out
    assert "✗ Exercise 2: random_output has shape (1, 255, 510, 1)" in out
    assert "The strides are swapped" in out
    assert "✓ Exercise 4: same_output is the zero-padded box blur" in out


def test_check_of_an_unreadable_file_explains_it(capsys, references):
    code, out, _ = run_cli(capsys, "check", FIXTURES / "truncated_json.ipynb", "--assignment", "conv2d", "--no-html")
    assert code == 1
    assert "looks truncated" in out


def test_validate_passes_for_the_conv2d_assignment(capsys, references):
    code, out, _ = run_cli(capsys, "validate", "conv2d")
    assert code == 0, out
    assert "10/10 ok" in out and "0/10 ok" in out


def test_schema_describes_gradescope_fields(capsys):
    code, out, _ = run_cli(capsys, "schema")
    schema = json.loads(out)
    assert code == 0
    assert {"score", "max_score", "output", "tests"} <= set(schema["required"]) | set(schema["properties"])
    assert schema["additionalProperties"] is False


def _break_spec(root):
    spec = root / "assignments/conv2d/assignment.toml"
    spec.write_text(spec.read_text().replace("rtol = 1e-4\n", "rtoll = 1e-4\n", 1))


def _remove_data(root):
    (root / "assignments/conv2d/data/ascent.npy").unlink()


def _break_solution(root):
    solution = root / "solutions/conv2d/conv2d.ipynb"
    solution.write_text(solution.read_text().replace("np.ones(weights[0].shape)", "2 * np.ones(weights[0].shape)"))


@pytest.mark.parametrize(
    "breaker, code, message",
    [
        (_break_spec, 3, "checks.3.rtoll: unknown key"),
        (_remove_data, 3, "file named in the spec is missing"),
        (_break_solution, 4, "fails its own checks"),
    ],
    ids=["spec-typo", "missing-data", "broken-solution"],
)
def test_operator_mistakes_get_clear_errors_and_exit_codes(capsys, assignment_copy, breaker, code, message):
    breaker(assignment_copy)
    got, out, err = run_cli(
        capsys, "grade", FIXTURES / "correct.ipynb", "--assignment", assignment_copy / "assignments/conv2d"
    )
    assert got == code
    assert message in err
    assert out == ""


def test_unknown_assignment_lists_the_known_ones(capsys):
    code, _, err = run_cli(capsys, "grade", FIXTURES / "correct.ipynb", "--assignment", "conv3d")
    assert code == 3
    assert "unknown assignment 'conv3d'" in err and "conv2d" in err


def test_batch_into_a_file_is_an_operator_error(capsys, tmp_path, references):
    (tmp_path / "subs").mkdir()
    shutil.copy(FIXTURES / "correct.ipynb", tmp_path / "subs")
    (tmp_path / "out").write_text("not a folder")
    code, _, err = run_cli(capsys, "batch", tmp_path / "subs", "--assignment", "conv2d", "--out", tmp_path / "out")
    assert code == 3
    assert "not writable" in err


def test_entry_point_is_installed():
    exe = shutil.which("grader", path=str(ROOT / ".venv" / "bin")) or shutil.which("grader")
    assert exe, "the grader console script is not installed"
    proc = subprocess.run([exe, "schema"], capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout)["title"] == "Result"
