"""grader.compare: the NaN-aware tolerance comparison, the scale-factor
detector behind "your values are 1/9 of the expected ones", and shape text."""

import math

import numpy as np
import pytest

from grader.checking.compare import compare_values, describe_shape, is_real_numeric, scale_factor

NAN, INF = float("nan"), float("inf")

# actual, expected, rtol, atol, matches
MATCH_CASES = [
    ("exact", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.0, 0.0, True),
    ("within_atol", [1.0005, 2.0], [1.0, 2.0], 0.0, 1e-3, True),
    ("on_atol_boundary", [1.5, 2.0], [1.0, 2.0], 0.0, 0.5, True),
    ("outside_atol", [1.002, 2.0], [1.0, 2.0], 0.0, 1e-3, False),
    ("within_rtol", [1000.5], [1000.0], 1e-3, 0.0, True),
    ("outside_rtol", [1002.0], [1000.0], 1e-3, 0.0, False),
    # the tolerance scales with |expected|, not |actual|
    ("rtol_uses_expected", [2.0], [1.0], 1.0, 0.0, True),
    ("rtol_not_symmetric", [1.0], [2.0], 0.4, 0.0, False),
    ("atol_plus_rtol", [101.5], [100.0], 1e-2, 0.5, True),
    ("negative_values", [-1.0005], [-1.0], 0.0, 1e-3, True),
    ("nan_in_actual", [NAN, 2.0], [1.0, 2.0], 1.0, 1e9, False),
    ("nan_in_both", [NAN], [NAN], 1.0, 1e9, False),
    ("nan_in_expected", [1.0], [NAN], 1.0, 1e9, False),
    ("inf_in_actual", [INF], [1.0], 1.0, 1e9, False),
    ("inf_in_both", [INF], [INF], 1.0, 1e9, False),
    ("minus_inf_in_both", [-INF], [-INF], 1.0, 1e9, False),
    # |1 - inf| <= inf holds in IEEE arithmetic: the infinite bound must not let it match
    ("inf_only_in_expected", [1.0], [INF], 1.0, 1e9, False),
    ("bound_overflows_to_inf", [1e308], [1.7e308], 1.0, 1e308, True),
    ("int_vs_float", np.array([1, 2, 3]), [1.0, 2.0, 3.0], 0.0, 0.0, True),
    ("bool_vs_float", np.array([True, False]), [1.0, 0.0], 0.0, 0.0, True),
    ("float32_actual", np.array([0.1, 0.2], dtype=np.float32), [0.1, 0.2], 1e-5, 1e-6, True),
    # float32's 0.1 is 1.49e-9 from float64's: compared in float64, not in float32
    ("float32_judged_in_float64", np.array([0.1], dtype=np.float32), [0.1], 0.0, 1e-9, False),
    ("float16_actual", np.array([0.5, 2.0], dtype=np.float16), [0.5, 2.0], 0.0, 0.0, True),
    ("longdouble_actual", np.array([1.0], dtype=np.longdouble), [1.0], 0.0, 0.0, True),
    ("empty", np.zeros((0, 3)), np.zeros((0, 3)), 0.0, 0.0, True),
    ("scalar", np.array(5.0), np.array(5.0), 0.0, 0.0, True),
]


@pytest.mark.parametrize(
    "actual, expected, rtol, atol, matches", [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES]
)
def test_compare_values_matches(actual, expected, rtol, atol, matches):
    cmp = compare_values(np.asarray(actual), np.asarray(expected, dtype=np.float64), rtol, atol)
    assert cmp.matches is matches


# actual, expected, atol, max_abs_error, mismatch_fraction, nonfinite
METRIC_CASES = [
    ("all_equal", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], 0.1, 0.0, 0.0, 0),
    ("one_of_four_off", [1.0, 2.0, 3.0, 9.0], [1.0, 2.0, 3.0, 4.0], 0.1, 5.0, 0.25, 0),
    ("small_errors_pass_one_fails", [1.05, 2.0, 3.5, 4.0], [1.0, 2.0, 3.0, 4.0], 0.1, 0.5, 0.25, 0),
    ("all_off", [2.0, 3.0], [1.0, 1.0], 0.1, 2.0, 1.0, 0),
    # the max error is over finite elements only; a NaN is a mismatch
    ("nan_ignored_in_max_error", [NAN, 2.5, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], 0.1, 0.5, 0.5, 1),
    ("inf_counts_as_nonfinite", [INF, -INF, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], 0.1, 0.0, 0.5, 2),
    ("nothing_finite", [NAN, INF], [1.0, 2.0], 0.1, None, 1.0, 2),
    # a NaN in the expected values is a mismatch, but not the student's nonfinite value
    ("nan_only_in_expected", [1.0, 2.0], [NAN, 2.0], 0.1, 0.0, 0.5, 0),
]


@pytest.mark.parametrize(
    "actual, expected, atol, max_abs_error, fraction, nonfinite",
    [c[1:] for c in METRIC_CASES],
    ids=[c[0] for c in METRIC_CASES],
)
def test_compare_values_metrics(actual, expected, atol, max_abs_error, fraction, nonfinite):
    cmp = compare_values(np.array(actual), np.array(expected), 0.0, atol)
    if max_abs_error is None:
        assert cmp.max_abs_error is None
    else:
        assert cmp.max_abs_error == pytest.approx(max_abs_error)
    assert cmp.mismatch_fraction == pytest.approx(fraction)
    assert cmp.nonfinite == nonfinite
    assert cmp.matches is (fraction == 0.0)


def _by_definition(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple:
    """compare_values's contract, element by element in plain Python floats."""
    pairs = [(float(x), float(y)) for x, y in zip(actual.ravel().tolist(), expected.ravel().tolist(), strict=True)]
    finite = [math.isfinite(x) and math.isfinite(y) for x, y in pairs]
    ok = [f and abs(x - y) <= atol + rtol * abs(y) for (x, y), f in zip(pairs, finite, strict=True)]
    errors = [abs(x - y) for (x, y), f in zip(pairs, finite, strict=True) if f]
    return (
        all(ok),
        max(errors) if errors else None,
        (len(ok) - sum(ok)) / max(len(ok), 1),
        sum(not math.isfinite(x) for x, _ in pairs),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("seed", range(6))
def test_compare_values_agrees_with_its_definition(seed, dtype):
    """Random arrays, most of them matching (the common case, which takes a
    shorter path) and some with NaN, inf or wrong values on either side."""
    rng = np.random.default_rng(seed)
    expected = rng.normal(0, 100, 400)
    actual = (expected + rng.normal(0, 1e-3, 400)).astype(dtype)
    if seed % 3 == 1:  # a few wrong or non-finite values in the actual array
        where = rng.choice(400, 5, replace=False)
        actual[where[:2]] = actual[where[:2]] + 7
        if dtype != np.int64:
            actual[where[2:]] = [np.nan, np.inf, -np.inf]
    if seed % 3 == 2:  # and in the expected one: infinities alone (which IEEE's <= lets through), or with a NaN
        special = [np.inf, -np.inf] if seed < 3 else [np.nan, np.inf, -np.inf]
        expected[rng.choice(400, len(special), replace=False)] = special
    atol = 1.0 if dtype == np.int64 else 1e-2  # integers are off by their rounding
    cmp = compare_values(actual, expected, 1e-4, atol)
    matches, max_abs, fraction, nonfinite = _by_definition(actual, expected, 1e-4, atol)
    assert (cmp.matches, cmp.mismatch_fraction, cmp.nonfinite) == (matches, fraction, nonfinite)
    assert cmp.max_abs_error == pytest.approx(max_abs, rel=1e-12, abs=0)


def test_compare_values_metrics_are_plain_floats():
    cmp = compare_values(np.ones((2, 3), dtype=np.float32) * 2, np.ones((2, 3)), 0.0, 0.1)
    assert type(cmp.max_abs_error) is float and type(cmp.mismatch_fraction) is float
    assert type(cmp.nonfinite) is int and type(cmp.matches) is bool
    assert cmp.max_abs_error == 1.0 and cmp.mismatch_fraction == 1.0


def test_compare_values_large_overflowing_difference_is_finite_mismatch():
    cmp = compare_values(np.array([1e308]), np.array([-1e308]), 0.0, 1.0)
    assert not cmp.matches
    assert cmp.nonfinite == 0
    assert cmp.mismatch_fraction == 1.0


def test_compare_values_does_not_modify_inputs():
    actual = np.array([NAN, 1.0])
    expected = np.array([1.0, 1.0])
    compare_values(actual, expected, 0.0, 0.0)
    assert np.isnan(actual[0]) and actual[1] == 1.0 and list(expected) == [1.0, 1.0]


@pytest.mark.parametrize(
    "actual_shape, expected_shape",
    [
        ((1, 255, 510, 1), (1, 510, 255, 1)),
        ((3,), (3, 1)),
        ((2, 2), (4,)),
        ((), (1,)),
    ],
)
def test_compare_values_shape_mismatch_raises(actual_shape, expected_shape):
    with pytest.raises(ValueError, match="shapes differ"):
        compare_values(np.zeros(actual_shape), np.zeros(expected_shape), 1e-5, 1e-3)


# --- scale_factor -------------------------------------------------------------


def _random(shape=(1, 6, 5, 1), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape)


@pytest.mark.parametrize("factor", [1 / 9, 1 / 255, 2.0, -1.0, 1.0])
def test_scale_factor_recovers_exact_factor(factor):
    expected = _random()
    assert scale_factor(expected * factor, expected) == pytest.approx(factor, rel=1e-9)


def test_scale_factor_one_ninth_in_float32():
    """A kernel divided by 9, predicted by Keras in float32."""
    expected = _random((1, 20, 30, 1))
    actual = (expected / 9).astype(np.float32)
    assert scale_factor(actual, expected) == pytest.approx(1 / 9, rel=1e-6)


@pytest.mark.parametrize(
    "case",
    ["noisy", "offset", "unrelated", "zero_expected", "nan_actual", "nan_expected", "inf_actual", "shape_differs"],
)
def test_scale_factor_none(case):
    expected = _random()
    rng = np.random.default_rng(1)
    actual = expected / 9
    if case == "noisy":
        actual = actual + rng.normal(0, 1.0, size=actual.shape)
    elif case == "offset":
        actual = actual + 5.0
    elif case == "unrelated":
        actual = _random(seed=2)
    elif case == "zero_expected":
        expected = np.zeros_like(expected)
    elif case == "nan_actual":
        actual[0, 0, 0, 0] = np.nan
    elif case == "nan_expected":
        expected[0, 1, 1, 0] = np.nan
    elif case == "inf_actual":
        actual[0, 0, 0, 0] = np.inf
    elif case == "shape_differs":
        actual = actual[:, :, :4]
    assert scale_factor(actual, expected) is None


def test_scale_factor_tolerates_float32_rounding_but_not_small_noise():
    expected = _random((1, 10, 10, 1))
    assert scale_factor((expected * 0.5).astype(np.float32), expected) == pytest.approx(0.5, rel=1e-6)
    noisy = expected * 0.5 + np.random.default_rng(3).normal(0, 0.5, expected.shape)
    assert scale_factor(noisy, expected) is None


# --- describe_shape / is_real_numeric -----------------------------------------


@pytest.mark.parametrize(
    "shape, text",
    [
        ((1, 512, 512, 1), "(1, 512, 512, 1)"),
        ((3,), "(3,)"),
        ((), "()"),
        ([2, 3], "(2, 3)"),
        ((np.int64(4), np.int32(5)), "(4, 5)"),
        (np.zeros((0, 7)).shape, "(0, 7)"),
    ],
)
def test_describe_shape(shape, text):
    assert describe_shape(shape) == text


@pytest.mark.parametrize(
    "dtype, numeric",
    [
        (np.float32, True),
        (np.float64, True),
        (np.int8, True),
        (np.uint16, True),
        (np.bool_, True),
        (np.complex64, False),
        (object, False),
        ("U3", False),
        ("datetime64[s]", False),
    ],
)
def test_is_real_numeric(dtype, numeric):
    assert is_real_numeric(np.zeros(2, dtype=dtype)) is numeric


def test_nan_comparison_is_not_accidentally_equal():
    """Guards the documented rule that NaN never matches, even with huge tolerances."""
    cmp = compare_values(np.full((2, 2), np.nan), np.full((2, 2), np.nan), math.inf, math.inf)
    assert not cmp.matches and cmp.mismatch_fraction == 1.0 and cmp.nonfinite == 4
