"""Installs where students are: the wheel goes into a fresh environment that
already has TensorFlow (standing for Colab's, or a student's own) without
touching it, and that environment's `grader check`, run in the student kit
from a folder outside the repository with an empty cache, scores the visible
checks as the instructor's grader does.

Needs the package index (pip installs TensorFlow and the grader's
dependencies into the new environment): about a minute with pip's cache."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT
from packaging.utils import canonicalize_name

from grader.model.assignment import load_assignment
from grader.model.versions import PROVIDERS, installed

pytestmark = pytest.mark.slow

TENSORFLOWS = {*PROVIDERS["tensorflow"], "tensorflow-macos", "tf-nightly", "tf-nightly-cpu"}
NOTEBOOKS = ("correct", "swapped_strides")
BIN = "Scripts" if os.name == "nt" else "bin"


def run(command: list, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{command}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def distributions(python: Path) -> dict[str, str]:
    listed = json.loads(run([python, "-m", "pip", "list", "--format", "json"]).stdout)
    return {canonicalize_name(d["name"]): d["version"] for d in listed}


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A fresh venv with this machine's TensorFlow in it, then the wheel built
    from this source tree: (venv python, what was there before, what after)."""
    tmp = tmp_path_factory.mktemp("student-install")
    timings = {}
    start = time.monotonic()
    source = tmp / "source"  # a clean copy: no stale build/ of the checkout gets into the wheel
    shutil.copytree(ROOT / "grader", source / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", source])
    (wheel,) = (tmp / "dist").glob("grader-*.whl")
    timings["build"] = time.monotonic() - start
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / BIN / "python"
    # What the wheel alone would bring into an environment without TensorFlow (resolved, not installed).
    run([python, "-m", "pip", "install", "-q", "--dry-run", "--report", tmp / "alone.json", wheel])
    alone = {canonicalize_name(i["metadata"]["name"]) for i in json.loads((tmp / "alone.json").read_text())["install"]}
    dist, version = installed("tensorflow")  # the student's TensorFlow stands in as this machine's
    run([python, "-m", "pip", "install", "-q", f"{dist}=={version}"])
    timings["venv, resolving the wheel alone, tensorflow"] = time.monotonic() - start - timings["build"]
    before = distributions(python)
    run([python, "-m", "pip", "install", "-q", wheel])
    after = distributions(python)
    timings["wheel"] = time.monotonic() - start - sum(timings.values())
    print("student install:", ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return python, alone, before, after


def test_the_wheel_installs_beside_tensorflow_and_changes_nothing_there(student):
    python, alone, before, after = student
    assert "grader" in alone and not alone & (TENSORFLOWS | {"keras"})  # the wheel asks for no TensorFlow of its own
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    assert not changed  # TensorFlow, Keras and everything they brought stay as they were
    assert [name for name in after if name in TENSORFLOWS] == [canonicalize_name(installed("tensorflow")[0])]
    assert "grader" in after and "grader" not in before
    imported = run([python, "-c", "import grader; print(grader.__file__)"], cwd=python.parent).stdout
    assert Path(imported.strip()).is_relative_to(python.parent.parent)  # the wheel's copy, not this checkout
    doctor = subprocess.run([python.parent / "grader", "doctor"], capture_output=True, text=True, timeout=120)
    tensorflow, keras = installed("tensorflow")[1], installed("keras")[1]
    assert f"tensorflow {tensorflow}, keras {keras}: ok" in doctor.stdout, doctor.stdout + doctor.stderr


def test_check_in_the_kit_scores_the_visible_checks_as_the_instructor(student, tmp_path):
    python = student[0]
    kit = tmp_path / "kit"
    run([ROOT / ".venv" / BIN / "grader", "release", "conv2d", "--out", kit], cwd=ROOT)
    mine = tmp_path / "my-work"  # the student's folder: neither the repository nor the kit
    mine.mkdir()
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_ROOT", "PYTHONPATH")}
    visible = [c.name for c in load_assignment("conv2d", ROOT).for_students().spec.checks]
    for name in NOTEBOOKS:
        notebook = shutil.copy(FIXTURES / f"{name}.ipynb", mine)
        instructor = json.loads(
            run([ROOT / ".venv" / BIN / "grader", "grade", notebook, "--assignment", "conv2d"], cwd=ROOT).stdout
        )
        checked = subprocess.run(
            [python.parent / "grader", "check", notebook, "--json", mine / f"{name}.json", "--no-html"],
            cwd=kit,
            env=env | {"GRADER_CACHE_DIR": str(cache)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        result = json.loads((mine / f"{name}.json").read_text())
        assert checked.returncode == (0 if result["score"] == result["max_score"] else 1), checked.stderr
        assert result["executor"] == "warm"
        scores = {t["name"]: t["score"] for t in result["tests"]}
        assert list(scores) == visible
        assert scores == {t["name"]: t["score"] for t in instructor["tests"] if t["name"] in visible}, name
    assert result["score"] < result["max_score"]  # the wrong notebook is wrong in the kit too
    assert not list(cache.iterdir())  # nothing built: the kit's references were enough
