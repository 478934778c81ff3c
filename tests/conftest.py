import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "tests" / "files"
FIXTURES = FILES / "conv2d"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session builds its own reference cache (once)."""
    cache = tmp_path_factory.mktemp("grader-cache")
    old = os.environ.get("GRADER_CACHE_DIR")
    os.environ["GRADER_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("GRADER_CACHE_DIR", None)
    else:
        os.environ["GRADER_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def assignment():
    from grader.model.assignment import load_assignment

    return load_assignment(ROOT / "assignments" / "conv2d")


@pytest.fixture(scope="session")
def references(assignment):
    from grader.grading.references import load_references

    return load_references(assignment)


@pytest.fixture(scope="session")
def graded(assignment, references):
    """Grade a fixture notebook once per session with the kernel executor."""
    from grader.execution.kernel import KernelExecutor
    from grader.grading.grade import grade

    cache = {}

    def run(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = grade(
                FIXTURES / f"{name}.ipynb", assignment, executor=KernelExecutor(), references=references, **options
            )
        return cache[key]

    return run


@pytest.fixture
def assignment_copy(tmp_path):
    """A writable copy of the project's assignments/ and solutions/ trees."""
    for folder in ("assignments", "solutions"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("examples"))
    return tmp_path


# Tests that run notebooks (the reference solution builds the references;
# executors start TensorFlow) are the slow tier: `pytest -m "not slow"` is the
# everyday one, with no TensorFlow.
SLOW_FIXTURES = {"references", "graded", "graded_folder", "keras", "assignment_copy"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
