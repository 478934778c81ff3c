"""The Gradescope bundle end to end: built into a zip, unpacked into a stand-in
for /autograder, and run through its own run_autograder script with this
venv's Python instead of setup.sh's, so what grades is the bundled grader with
the prebuilt references, and no solution notebook anywhere in reach."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import FIXTURES

from grader.model.result import Result
from grader.platforms.gradescope import (
    CONFIG_FILE,
    BundleError,
    build_bundle,
    find_notebook,
    read_submission_metadata,
    run_autograder,
)

HIDDEN = "Exercise 4: same_output is the zero-padded box blur"
METADATA = {  # as documented in Gradescope's submission_metadata page
    "id": 123456,
    "created_at": "2026-07-01T14:22:32.365935-07:00",
    "assignment": {
        "due_date": "2026-07-31T23:00:00.000000-07:00",
        "id": 25828,
        "title": "Conv2D",
        "total_points": "10.0",
    },
    "submission_method": "upload",
    "users": [{"email": "student@example.com", "id": 1234, "name": "Student User"}],
    "previous_submissions": [],
}
GRADESCOPE_TOP = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "test_output_format",
    "test_name_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
}
GRADESCOPE_TEST = {"name", "score", "max_score", "status", "output", "output_format", "visibility"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, assignment, references):
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    return build_bundle(assignment, out, test_visibility={HIDDEN: "hidden"})


def unpack(zip_path: Path, dest: Path) -> None:
    """Unzip, applying the Unix modes recorded in the archive (as unzip does)."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
        for info in zf.infolist():
            if info.external_attr >> 16:
                (dest / info.filename).chmod((info.external_attr >> 16) & 0o777)


def autograder_root(bundle: Path, tmp_path: Path, notebooks=(), metadata=METADATA) -> Path:
    """/autograder as Gradescope lays it out for one submission."""
    root = tmp_path / "autograder"
    unpack(bundle, root / "source")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    for name in notebooks:
        shutil.copy(FIXTURES / f"{name}.ipynb", root / "submission" / f"{name}.ipynb")
    if metadata is not None:
        (root / "submission_metadata.json").write_text(json.dumps(metadata))
    return root


def run_script(root: Path, python: str = sys.executable, fails: bool = False) -> tuple[dict | None, str]:
    """Run /autograder/run_autograder as Gradescope does (from /autograder),
    with this venv's Python and the bundle's source first on the path.  When
    the autograder fails it must exit non-zero and leave no results.json (so
    Gradescope records no score); else exit 0 with one."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_ROOT", "GRADER_CACHE_DIR", "PYTHONPATH")}
    env.update(AUTOGRADER_ROOT=str(root), GRADER_PYTHON=python, PYTHONPATH=str(root / "source"))
    proc = subprocess.run(
        [str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=400
    )
    output = proc.stdout + proc.stderr
    results = root / "results" / "results.json"
    if fails:
        assert proc.returncode != 0 and not results.exists(), output
        assert "the autograder failed" in output
        return None, output
    assert proc.returncode == 0, output
    return json.loads(results.read_text()), output


def run_check(root: Path) -> subprocess.CompletedProcess:
    """setup.sh's self-check, `python -m grader.platforms.gradescope --check`, on an unpacked bundle."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_ROOT", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "grader.platforms.gradescope", "--check", "--root", str(root)],
        cwd=root / "source",
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def zf_read(bundle: Path, name: str) -> bytes:
    with zipfile.ZipFile(bundle) as zf:
        return zf.read(name)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the zip


def test_zip_has_the_two_executable_scripts_at_its_top_and_no_solution(bundle, assignment):
    with zipfile.ZipFile(bundle) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        config = json.loads(zf.read(CONFIG_FILE))
        readme = zf.read("README.txt").decode()
    for script in ("setup.sh", "run_autograder"):
        mode = infos[script].external_attr >> 16
        assert mode & 0o170000 == 0o100000 and mode & 0o111 == 0o111, f"{script}: mode {mode:o}"
    assert not any(name.startswith(("solutions/", "assignments/conv2d/examples/")) for name in infos)
    # the solution is there only as the known-good notebook setup.sh grades (root's alone once installed)
    solution = sha256(assignment.solution_path.read_bytes())
    assert [name for name, info in infos.items() if sha256(zf_read(bundle, name)) == solution] == [
        "self-check/known-good.ipynb"
    ]
    assert "grader/platforms/gradescope/templates/setup.sh" in infos and "pyproject.toml" in infos
    assert zf_read(bundle, "course-requirements.txt") == b"scipy>=1.11\n"
    assert f"references/conv2d/{config['reference_key'][:32]}/manifest.json" in infos
    assert config["test_visibility"] == {HIDDEN: "hidden"}
    assert "768 MB" in readme and "2 GB" in readme
    assert "never as root" in readme and "isolation: none" not in readme
    assert "scipy>=1.11" in readme


def test_requirements_pin_every_runtime_distribution_as_installed_here(bundle):
    with zipfile.ZipFile(bundle) as zf:
        lines = zf.read("requirements.txt").decode().split()
    pins = dict(line.split("==") for line in lines)
    # every direct requirement of the installed grader, and what they need in turn (threadpoolctl once went missing)
    for name in ("tensorflow-cpu", "keras", "numpy", "nbclient", "pydantic", "pydantic-settings", "threadpoolctl"):
        assert pins[name] == metadata.version(name), name
    for name in ("protobuf", "pyzmq", "jupyter-client", "pydantic-core"):  # indirect ones
        assert pins[name] == metadata.version(name), name
    assert "pytest" not in pins and "ruff" not in pins  # test extras are not runtime requirements


def test_scripts_are_valid_bash(bundle, tmp_path):
    unpack(bundle, tmp_path)
    for script in ("setup.sh", "run_autograder"):
        proc = subprocess.run(["bash", "-n", str(tmp_path / script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_bundled_source_builds_a_grader_wheel(bundle, tmp_path):
    unpack(bundle, tmp_path / "source")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(tmp_path / "source"),
            "-w",
            str(tmp_path / "wheel"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "wheel").glob("grader-*.whl")
    assert "grader/platforms/gradescope/templates/run_autograder" in zipfile.ZipFile(wheel).namelist()


def test_unknown_check_in_visibility_is_refused_before_writing(assignment, references, tmp_path):
    with pytest.raises(BundleError, match="no check named 'Exercise 9'"):
        build_bundle(assignment, tmp_path / "a.zip", test_visibility={"Exercise 9": "hidden"})
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- grading through run_autograder


@pytest.mark.slow
def test_correct_notebook_scores_10_with_the_bundled_grader(bundle, tmp_path):
    root = autograder_root(bundle, tmp_path, ["correct"])
    results, stdout = run_script(root)
    assert set(results) == GRADESCOPE_TOP
    assert results["score"] == 10 and isinstance(results["execution_time"], int)
    assert results["stdout_visibility"] == "hidden" and results["visibility"] == "visible"
    assert all(set(t) == GRADESCOPE_TEST and t["status"] == "passed" for t in results["tests"])
    assert {t["name"]: t["visibility"] for t in results["tests"]}[HIDDEN] == "hidden"
    assert sum(t["visibility"] == "visible" for t in results["tests"]) == 7
    assert results["output"].startswith("7 of 7 checks passed: 8 / 8 points.")  # the hidden check is not told
    extra = results["extra_data"]
    assert extra["submitters"] == METADATA["users"] and extra["submission"]["id"] == 123456
    bundled = str((root / "source" / "grader").resolve())
    assert extra["grader"]["package"] == bundled and f"from {bundled};" in stdout
    result = Result.model_validate(extra["result"])
    assert result.status == "graded" and result.max_score == 10
    assert result.assignment.reference_key == extra["grader"]["reference_key"]
    assert not list(root.rglob("solutions"))


@pytest.mark.slow
def test_swapped_strides_scores_5_with_its_feedback(bundle, tmp_path):
    results, _ = run_script(autograder_root(bundle, tmp_path, ["swapped_strides"]))
    assert results["score"] == 5
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert len(failed) == 4 and all(t["score"] == 0 for t in failed)
    assert any("The strides are swapped" in t["output"] for t in failed)


@pytest.mark.slow
def test_setup_check_grades_the_bundled_template(bundle, tmp_path):
    root = autograder_root(bundle, tmp_path)
    proc = run_check(root)
    assert proc.returncode == 0, proc.stderr
    assert "known-good notebook known-good.ipynb: 10 / 10" in proc.stdout
    assert "template conv2d.ipynb: 0 / 10" in proc.stdout and "bundle ok" in proc.stdout


@pytest.mark.slow
def test_setup_check_refuses_an_image_that_grades_the_known_good_notebook_down(assignment, references, tmp_path):
    """A known-good notebook that does not get full marks fails the build,
    as an image that grades correct work down would."""
    bundle = build_bundle(assignment, tmp_path / "a.zip", known_good=FIXTURES / "swapped_strides.ipynb")
    root = autograder_root(bundle, tmp_path)
    proc = run_check(root)
    assert proc.returncode != 0
    assert "the known-good notebook got 5 / 10 in this image" in proc.stderr
    assert "The strides are swapped" in proc.stderr
    with zipfile.ZipFile(bundle) as zf:  # and the solution is not in a bundle with another known-good notebook
        solution = sha256(assignment.solution_path.read_bytes())
        assert all(sha256(zf.read(name)) != solution for name in zf.namelist())


# --------------------------------------------------------------------------- what cannot be graded


def test_no_notebook_scores_0_with_a_message(bundle, tmp_path):
    results, _ = run_script(autograder_root(bundle, tmp_path, metadata=None))
    assert results["score"] == 0
    assert "no Jupyter notebook" in results["output"] and "conv2d.ipynb" in results["output"]
    assert len(results["tests"]) == 8 and all(t["status"] == "failed" for t in results["tests"])
    assert results["extra_data"]["submitters"] == []


def test_two_notebooks_score_0_naming_both(bundle, tmp_path):
    results, _ = run_script(autograder_root(bundle, tmp_path, ["correct", "swapped_strides"]))
    assert results["score"] == 0
    assert "2 notebooks (correct.ipynb, swapped_strides.ipynb)" in results["output"]


def test_run_autograder_returns_what_it_writes(bundle, tmp_path):
    root = autograder_root(bundle, tmp_path)
    (root / "submission" / "notes.txt").write_text("my answers are in the other file")
    results = run_autograder(root)
    assert results is not None
    assert results == json.loads((root / "results" / "results.json").read_text())
    assert "(it holds: notes.txt)" in results["output"]


def test_corrupt_references_fail_the_autograder_and_record_no_score(bundle, tmp_path):
    root = autograder_root(bundle, tmp_path, ["correct"])
    (npy,) = list((root / "source" / "references").glob("conv2d/*/same_output.npy"))
    npy.write_bytes(npy.read_bytes()[:-8] + b"\0" * 8)
    _, stdout = run_script(root, fails=True)
    assert "missing or corrupt" in stdout and "SolutionError" in stdout  # the reason, for the instructor


def test_spec_edited_after_the_build_is_refused(bundle, tmp_path):
    root = autograder_root(bundle, tmp_path, ["correct"])
    spec = root / "source" / "assignments" / "conv2d" / "assignment.toml"
    spec.write_text(spec.read_text().replace("atol = 1e-3", "atol = 1.0"))
    _, stdout = run_script(root, fails=True)
    assert "changed since the bundle was built" in stdout


def test_python_that_does_not_start_fails_the_autograder(bundle, tmp_path):
    root = autograder_root(bundle, tmp_path, ["correct"])
    (root / "results").mkdir()
    (root / "results" / "results.json").write_text('{"score": 10}')  # a stale one is not left behind
    _, stdout = run_script(root, python=str(tmp_path / "no-such-python"), fails=True)
    assert "status 127" in stdout


def test_students_text_is_shown_as_text(bundle, tmp_path):
    """Gradescope renders a top-level output as HTML unless told otherwise:
    every output is declared "text", and terminal escapes are removed."""
    from grader.platforms.gradescope import load_bundle, to_gradescope

    root = autograder_root(bundle, tmp_path)
    loaded = load_bundle(root / "source")
    printed = "found <KerasTensor shape=(1, 255, 510, 1)> \x1b[31mred\x1b[0m\x00 & <b>"
    from grader.grading.grade import invalid_result

    result = invalid_result(root / "submission", loaded.assignment, printed, "kernel", 0.0, "k")
    result = result.model_copy(
        update={"tests": [result.tests[0].model_copy(update={"name": "<i>x</i>", "output": printed})]}
    )
    out = to_gradescope(result, loaded, [], {})
    assert out["output_format"] == out["test_output_format"] == out["test_name_format"] == "text"
    (test,) = out["tests"]
    assert test["output_format"] == "text"
    assert test["output"] == "found <KerasTensor shape=(1, 255, 510, 1)> red & <b>"
    assert "\x1b" not in out["output"] and "\x00" not in out["output"]


# --------------------------------------------------------------------------- small parts


def test_checkpoints_and_macos_debris_are_not_submissions(tmp_path):
    for name in ["hw/conv2d.ipynb", "hw/.ipynb_checkpoints/conv2d-checkpoint.ipynb", "__MACOSX/hw/._conv2d.ipynb"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert find_notebook(tmp_path, "conv2d.ipynb") == (tmp_path / "hw" / "conv2d.ipynb", None)


def test_unreadable_metadata_is_ignored(tmp_path, capsys):
    (tmp_path / "m.json").write_text("{not json")
    assert read_submission_metadata(tmp_path / "m.json") == ([], {})
    assert "not readable JSON" in capsys.readouterr().out
    assert read_submission_metadata(tmp_path / "absent.json") == ([], {})
