"""The only code of ours that runs inside the student's process.

After an answer cell runs, :func:`capture` evaluates each answer's expression in
the student's namespace and writes it as a ``.npy`` file (``allow_pickle=False``)
plus one small JSON manifest per capture point.  It judges nothing: whether an
answer is right is decided later, in the grader's own process, from these
files alone, so patching numpy or builtins in the student's code cannot change a
verdict.  This module depends on the standard library and numpy only, and is
loaded by file path so the student's process never imports the grader package.
"""

import json
import os

import numpy as np

# typing.TYPE_CHECKING, without importing typing into the student's process:
# type checkers take this name to be true, Python does not.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MODULE_NAME = "_grader_capture"
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
DETAIL_LIMIT = 500
MAX_MODELS = 8  # Keras models (or layers) whose weights are taken as candidates
MODEL_PACKAGES = ("keras", "tensorflow", "tf_keras")


def capture(
    namespace: dict[str, object],
    answers: dict[str, str],
    folder: str,
    point: str,
    max_bytes: int,
    weights: dict[str, int] | None = None,
) -> None:
    """Write every answer in ``answers`` ({name: expression}) found in
    ``namespace`` to ``folder`` as ``<point>--<name>.npy``, and a manifest
    ``<point>.json`` with one status entry per answer.

    ``weights`` ({name: index}) names answers that are a model's weight: for
    each, ``get_weights()[index]`` of every Keras model or layer in the
    namespace is written too, as ``<point>--<name>@<variable>.npy`` (the
    grader looks among them for the model that produced an output, whatever
    the student called it).  An answer in ``weights`` only has no value of
    its own here, just its candidates."""
    weights = weights or {}
    models = _models(namespace) if weights else []
    weights_of: dict[str, Any] = {}  # variable -> get_weights(), asked once per model (a copy of every variable)
    manifest: dict[str, dict[str, object]] = {}
    for name in list(answers) + [n for n in weights if n not in answers]:
        expression = answers.get(name)
        if expression is None:
            entry: dict[str, object] = {"status": "missing", "detail": "not captured at this point"}
        else:
            entry = _capture_one(namespace, name, expression, folder, point, max_bytes)
        if name in weights:
            entry["candidates"] = _candidates(models, weights_of, weights[name], name, folder, point, max_bytes)
        manifest[name] = entry
    tmp = os.path.join(folder, point + ".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    os.replace(tmp, os.path.join(folder, point + ".json"))


def _capture_one(
    namespace: dict[str, object], name: str, expression: str, folder: str, point: str, max_bytes: int
) -> dict[str, object]:
    try:
        if expression.isidentifier():
            if expression not in namespace:
                return {"status": "missing", "detail": f"name '{expression}' is not defined"}
            value = namespace[expression]
        else:
            value = eval(expression, namespace)  # the expression comes from the instructor's spec
    except BaseException as exc:  # the student's objects may raise anything
        return {"status": "missing", "detail": _short(f"evaluating `{expression}` raised {type(exc).__name__}: {exc}")}
    type_name = f"{type(value).__module__}.{type(value).__qualname__}"
    try:
        array = np.asarray(value)
    except BaseException as exc:
        return {
            "status": "unsupported",
            "type": type_name,
            "detail": _short(f"cannot be converted to an array ({type(exc).__name__}: {exc})"),
        }
    if array.dtype.hasobject or array.dtype.kind not in NUMERIC_KINDS:
        return {"status": "unsupported", "type": type_name, "detail": f"is not a numeric array (dtype {array.dtype})"}
    if array.nbytes > max_bytes:
        return {
            "status": "too_large",
            "type": type_name,
            "detail": f"is {array.nbytes} bytes, more than the {max_bytes} allowed",
        }
    filename = f"{point}--{name}.npy"
    np.save(os.path.join(folder, filename), array, allow_pickle=False)  # keeps 0-d scalars 0-d
    return {"status": "ok", "type": type_name, "file": filename}


def _models(namespace: dict[str, object]) -> list[tuple[str, "Any"]]:
    """(variable, object) for the Keras models and layers in the namespace, by name."""
    found = []
    for variable in sorted(k for k in namespace if isinstance(k, str) and k.isidentifier() and not k.startswith("_")):
        try:
            kind = type(namespace[variable])
            if kind.__module__.split(".")[0] in MODEL_PACKAGES and callable(getattr(kind, "get_weights", None)):
                found.append((variable, namespace[variable]))
        except BaseException:
            continue
        if len(found) == MAX_MODELS:
            break
    return found


def _candidates(
    models: list[tuple[str, "Any"]],
    weights_of: dict[str, "Any"],
    index: int,
    name: str,
    folder: str,
    point: str,
    max_bytes: int,
) -> dict[str, str]:
    files: dict[str, str] = {}
    for variable, model in models:
        try:
            if variable not in weights_of:
                weights_of[variable] = model.get_weights()
            array = np.asarray(weights_of[variable][index])
        except BaseException:
            continue
        if array.dtype.hasobject or array.dtype.kind not in NUMERIC_KINDS or array.nbytes > max_bytes:
            continue
        filename = f"{point}--{name}@{variable}.npy"
        np.save(os.path.join(folder, filename), array, allow_pickle=False)
        files[variable] = filename
    return files


def _short(text: object) -> str:
    text = str(text)
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 3] + "..."


def loader_source() -> str:
    """Code run first in a kernel: loads this file as ``_grader_capture``."""
    return (
        "import importlib.util as _grader_util\n"
        f"_grader_spec = _grader_util.spec_from_file_location({MODULE_NAME!r}, {os.path.abspath(__file__)!r})\n"
        f"{MODULE_NAME} = _grader_util.module_from_spec(_grader_spec)\n"
        f"_grader_spec.loader.exec_module({MODULE_NAME})\n"
        "del _grader_util, _grader_spec\n"
    )


def call_source(
    answers: dict[str, str],
    folder: str | os.PathLike[str],
    point: str,
    max_bytes: int,
    weights: dict[str, int] | None = None,
) -> str:
    """Code run in a kernel after an answer cell: one call, no logic."""
    return (
        f"{MODULE_NAME}.capture(globals(), {dict(answers)!r}, {str(folder)!r}, {point!r}, {int(max_bytes)!r}, "
        f"{dict(weights or {})!r})\n"
    )
