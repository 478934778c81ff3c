"""How the grader is declared: TensorFlow is an extra, so the wheel installs
beside a student's own TensorFlow; what Gradescope pins still includes it."""

import tomllib
from importlib import metadata

from conftest import ROOT

from grader.model import versions
from grader.model.versions import RUNTIME_EXTRAS, runtime_closure

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_tensorflow_is_an_extra_not_a_core_requirement():
    assert not [r for r in PROJECT["dependencies"] if r.lower().startswith(("tensorflow", "keras"))]
    (extra,) = RUNTIME_EXTRAS
    assert PROJECT["optional-dependencies"][extra] == ["tensorflow-cpu==2.21.*"]
    assert any(r.startswith("build") for r in PROJECT["optional-dependencies"]["test"])  # the wheel test builds one


def test_the_runtime_closure_holds_tensorflow_as_installed_only_with_its_extra():
    core, pinned = runtime_closure("grader"), runtime_closure("grader", extras=RUNTIME_EXTRAS)
    assert "tensorflow-cpu" not in core and "keras" not in core
    for name in ("tensorflow-cpu", "keras", "protobuf", "numpy", "pydantic"):
        assert pinned[name] == metadata.version(name), name
    assert set(core) < set(pinned)
    assert "pytest" not in pinned and "build" not in pinned  # the test extra is not asked for


def test_extras_named_by_requirements_are_followed(monkeypatch):
    requires = {
        "top": ["a[x]>=1", 'c; extra == "cpu"', 'd; extra == "test"', 'e; sys_platform == "nowhere"'],
        "a": ['b; extra == "x"', 'f; extra == "y"'],
        "b": [],
        "c": ["a"],
    }
    monkeypatch.setattr(versions.metadata, "requires", lambda dist: requires.get(dist, []))
    monkeypatch.setattr(versions, "installed", lambda name: (name, "1.0") if name in "abcdef" else None)
    assert runtime_closure("top") == {"a": "1.0", "b": "1.0"}
    assert runtime_closure("top", extras=["cpu"]) == {"a": "1.0", "b": "1.0", "c": "1.0"}
