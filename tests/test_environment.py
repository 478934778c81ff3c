"""The course's environment: what an assignment's students may import, read
from assignment.toml or a requirements file, checked against this Python,
and refused before a batch grades anyone down for it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from grader.errors import CourseEnvironmentError, SpecError
from grader.grading.batch import grade_batch
from grader.model.assignment import load_assignment
from grader.model.environment import Environment, read_requirements_file, requirements_of, unmet


def copy_assignment(tmp_path: Path, toml_extra: str = "", requirements: str | None = None) -> Path:
    """conv2d's folder under tmp_path/assignments, with an [environment] table
    appended and its requirements file replaced (or removed)."""
    folder = tmp_path / "assignments" / "conv2d"
    shutil.copytree(ROOT / "assignments" / "conv2d", folder, ignore=shutil.ignore_patterns("examples"))
    (folder / "requirements.txt").unlink()
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    if toml_extra:
        spec = folder / "assignment.toml"
        text = spec.read_text()
        first_table = text.index("\n[")  # top-level keys must come before the first table
        spec.write_text(text[:first_table] + "\n" + toml_extra + text[first_table:])
    return folder


def test_conv2d_allows_scipy():
    assert load_assignment("conv2d").requirements == ("scipy>=1.11",)


def test_inline_and_file_requirements_are_merged(tmp_path):
    folder = copy_assignment(
        tmp_path,
        '[environment]\nrequirements = ["scipy>=1.11", "pandas>=2"]\n',
        "# allowed\nscipy>=1.11\n\npillow  # for imshow\n",
    )
    assert load_assignment(folder).requirements == ("scipy>=1.11", "pandas>=2", "pillow")


def test_a_named_requirements_file_must_exist(tmp_path):
    folder = copy_assignment(tmp_path, '[environment]\nrequirements_file = "course.txt"\n')
    with pytest.raises(SpecError, match="course.txt does not exist"):
        load_assignment(folder)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-r other.txt", "pip options cannot be checked"),
        ("--index-url https://example.org/simple", "pip options cannot be checked"),
        ("evil @ https://example.org/evil.whl", "a URL requirement cannot be checked"),
        ("scipy >>= 1", "is not a requirement specifier"),
    ],
)
def test_requirements_that_cannot_be_checked_are_refused_with_their_line(tmp_path, line, message):
    path = tmp_path / "requirements.txt"
    path.write_text(f"scipy>=1.11\n{line}\n")
    with pytest.raises(SpecError, match=rf"line 2: .*{message}"):
        read_requirements_file(path)
    with pytest.raises(Exception, match=message):
        Environment(requirements=[line])


def test_unmet_names_each_missing_or_mismatched_package():
    numpy = __import__("numpy").__version__
    problems = unmet(
        [
            "numpy>=1.0",  # met
            "no-such-package-for-grader>=1",
            f"numpy<{numpy}",
            "tensorflow>=1",  # met by tensorflow-cpu: one alias table
            'pywin32>=300; sys_platform == "win32"',  # not needed here
        ]
    )
    assert problems == [
        "no-such-package-for-grader is not installed (the assignment allows no-such-package-for-grader>=1)",
        f"numpy {numpy} is installed, but the assignment asks for numpy<{numpy}",
    ]


def test_a_batch_refuses_before_writing_anything(tmp_path):
    folder = copy_assignment(tmp_path, requirements="no-such-package-for-grader>=1\n")
    (tmp_path / "subs").mkdir()
    shutil.copy(ROOT / "tests" / "files" / "conv2d" / "correct.ipynb", tmp_path / "subs" / "alice.ipynb")
    with pytest.raises(CourseEnvironmentError, match="no-such-package-for-grader is not installed") as info:
        grade_batch(tmp_path / "subs", load_assignment(folder), tmp_path / "out")
    assert "pip install -r" in str(info.value) and "would lose points" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_the_cli_says_what_is_missing(tmp_path):
    copy_assignment(tmp_path, requirements="no-such-package-for-grader>=1\n")
    (tmp_path / "subs").mkdir()
    shutil.copy(ROOT / "tests" / "files" / "conv2d" / "correct.ipynb", tmp_path / "subs" / "alice.ipynb")
    env = {"GRADER_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    batch = subprocess.run(
        [sys.executable, "-m", "grader", "batch", "subs", "--assignment", "conv2d", "--out", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert batch.returncode == 6 and "no-such-package-for-grader is not installed" in batch.stderr
    doctor = subprocess.run([sys.executable, "-m", "grader", "doctor"], env=env, capture_output=True, text=True)
    assert "assignment conv2d: students may use no-such-package-for-grader>=1: missing" in doctor.stdout
    assert "  missing no-such-package-for-grader is not installed" in doctor.stdout
    assert doctor.returncode == 1


def test_requirements_of_without_any_declaration(tmp_path):
    assert requirements_of(Environment(), tmp_path) == []
