"""Pure array comparisons: no notebook, kernel or TensorFlow involved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Dtypes that float64 arithmetic takes exactly as they are (no float64 copy
# needed first); others (integers, bool, longdouble) are converted as before.
_CAST_AS_READ = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Comparison:
    matches: bool
    max_abs_error: float | None  # over the finite elements; None when none is finite
    mismatch_fraction: float  # fraction of elements outside the tolerance (NaN/inf count as mismatched)
    nonfinite: int  # NaN or inf elements in the actual array


def compare_values(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> Comparison:
    """NaN-aware allclose: |actual - expected| <= atol + rtol * |expected|,
    where NaN or inf never matches anything (not even NaN).  Computed in
    float64 throughout."""
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    a = np.asarray(actual).ravel()  # 1-d: a 0-d array's arithmetic gives scalars
    if a.dtype not in _CAST_AS_READ:
        a = a.astype(np.float64)
    e = np.asarray(expected, dtype=np.float64).ravel()
    # A batch compares every answer of every submission: in place where it
    # can be, and the actual array (float32, as Keras gives it) is cast to
    # float64 as it is read rather than copied first.
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.subtract(a, e, dtype=np.float64)
        np.abs(diff, out=diff)
        bound = np.abs(e)
        bound *= rtol
        bound += atol
        ok = diff <= bound
    matching = np.count_nonzero(ok)
    if matching == a.size and np.isfinite(bound).all():
        # Every element is within a finite bound of its expected value, so
        # every actual one is finite too: the answer of a correct submission
        # needs none of the finiteness masks below.
        return Comparison(
            matches=True, max_abs_error=float(diff.max()) if a.size else None, mismatch_fraction=0.0, nonfinite=0
        )
    finite_a = np.isfinite(a)
    finite = finite_a & np.isfinite(e)
    ok &= finite  # an infinite expected value bounds nothing
    size = max(a.size, 1)
    finite_count = np.count_nonzero(finite)
    if finite_count == a.size:
        max_abs = float(diff.max()) if a.size else None
    else:
        max_abs = float(diff[finite].max()) if finite_count else None
    matching = np.count_nonzero(ok)
    return Comparison(
        matches=bool(matching == a.size),
        max_abs_error=max_abs,
        mismatch_fraction=float((a.size - matching) / size),
        nonfinite=int(a.size - np.count_nonzero(finite_a)),
    )


def scale_factor(actual: np.ndarray, expected: np.ndarray, rel_residual: float = 1e-4) -> float | None:
    """The k for which actual ~= k * expected (least squares), if that fits
    within ``rel_residual`` of the actual's norm; else None."""
    if actual.shape != expected.shape:
        return None
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(e).all()):
        return None
    ee = float(e @ e)
    if ee == 0.0:
        return None
    k = float(a @ e) / ee
    residual = float(np.linalg.norm(a - k * e))
    return k if residual <= rel_residual * max(float(np.linalg.norm(a)), 1e-12) else None


def is_real_numeric(array: np.ndarray) -> bool:
    return array.dtype.kind in "biuf"


def describe_shape(shape: Iterable[int]) -> str:
    shape = tuple(int(s) for s in shape)
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
