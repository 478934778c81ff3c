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

MODULE_NAME = "_grader_capture"
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
DETAIL_LIMIT = 500


def capture(namespace, answers, folder, point, max_bytes):
    """Write every answer in ``answers`` ({name: expression}) found in
    ``namespace`` to ``folder`` as ``<point>--<name>.npy``, and a manifest
    ``<point>.json`` with one status entry per answer."""
    manifest = {}
    for name, expression in answers.items():
        manifest[name] = _capture_one(namespace, name, expression, folder, point, max_bytes)
    tmp = os.path.join(folder, point + ".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    os.replace(tmp, os.path.join(folder, point + ".json"))


def _capture_one(namespace, name, expression, folder, point, max_bytes):
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
        return {"status": "unsupported", "type": type_name, "detail": _short(f"cannot be converted to an array ({type(exc).__name__}: {exc})")}
    if array.dtype.hasobject or array.dtype.kind not in NUMERIC_KINDS:
        return {"status": "unsupported", "type": type_name, "detail": f"is not a numeric array (dtype {array.dtype})"}
    if array.nbytes > max_bytes:
        return {"status": "too_large", "type": type_name, "detail": f"is {array.nbytes} bytes, more than the {max_bytes} allowed"}
    filename = f"{point}--{name}.npy"
    np.save(os.path.join(folder, filename), array, allow_pickle=False)  # keeps 0-d scalars 0-d
    return {"status": "ok", "type": type_name, "file": filename}


def _short(text):
    text = str(text)
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 3] + "..."


def loader_source():
    """Code run first in a kernel: loads this file as ``_grader_capture``."""
    return (
        "import importlib.util as _grader_util\n"
        f"_grader_spec = _grader_util.spec_from_file_location({MODULE_NAME!r}, {os.path.abspath(__file__)!r})\n"
        f"{MODULE_NAME} = _grader_util.module_from_spec(_grader_spec)\n"
        f"_grader_spec.loader.exec_module({MODULE_NAME})\n"
        "del _grader_util, _grader_spec\n"
    )


def call_source(answers, folder, point, max_bytes):
    """Code run in a kernel after an answer cell: one call, no logic."""
    return f"{MODULE_NAME}.capture(globals(), {dict(answers)!r}, {str(folder)!r}, {point!r}, {int(max_bytes)!r})\n"
