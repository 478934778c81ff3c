"""Settings come from the environment in one place, and a caller can pass
them explicitly instead (Gradescope's run side points the library at the
bundle's references without touching os.environ)."""

import dataclasses
import os
from pathlib import Path

import pytest

from grader.errors import GraderError
from grader.grading.references import PINNED_KEY_FILE, reference_key
from grader.model.assignment import load_assignment, project_root
from grader.settings import Settings, load_settings


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({}, "cache_dir", Path.home() / ".cache" / "grader"),
        ({"GRADER_CACHE_DIR": ""}, "cache_dir", Path.home() / ".cache" / "grader"),
        ({"GRADER_CACHE_DIR": "/srv/cache"}, "cache_dir", Path("/srv/cache")),
        ({"GRADER_ROOT": "/srv/course"}, "root", Path("/srv/course")),
        ({}, "root", None),
        ({"GRADER_PYTHON": "/usr/bin/python3"}, "root", None),  # run_autograder's variable is not ours to refuse
    ],
)
def test_settings_from_the_environment(monkeypatch, env, field, expected):
    for name in ("GRADER_CACHE_DIR", "GRADER_ROOT", "GRADER_LTI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert getattr(load_settings(), field) == expected


def test_the_token_is_not_printed(monkeypatch):
    monkeypatch.setenv("GRADER_LTI_TOKEN", "s3cret-token")
    settings = load_settings()
    assert settings.lti_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(settings) and "s3cret-token" not in str(settings)


def test_settings_are_frozen():
    with pytest.raises(Exception, match="frozen"):
        Settings().root = Path("/elsewhere")


def test_grader_root_wins_over_the_current_folder(monkeypatch, tmp_path):
    (tmp_path / "here" / "assignments").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv("GRADER_ROOT", str(tmp_path / "course"))
    assert project_root() == tmp_path / "course"
    monkeypatch.delenv("GRADER_ROOT")
    assert project_root() == tmp_path / "here"
    assert project_root(tmp_path / "given") == tmp_path / "given"


def test_an_explicit_cache_is_used_for_the_pinned_key(tmp_path, monkeypatch):
    """A bundle has no solution: its key is pinned in the cache it ships, and
    the caller names that cache; the environment's cache is not consulted."""
    assignment = dataclasses.replace(load_assignment("conv2d"), solution_path=tmp_path / "absent.ipynb")
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "environment-cache"))
    shipped = tmp_path / "shipped"
    (shipped / "conv2d").mkdir(parents=True)
    (shipped / "conv2d" / PINNED_KEY_FILE).write_text("abc123\n")
    before = dict(os.environ)
    assert reference_key(assignment, shipped) == "abc123"
    assert dict(os.environ) == before
    with pytest.raises(GraderError, match="reference solution not found"):
        reference_key(assignment)
