"""grader.compute: the independent NumPy model of Conv2D / MaxPool2D that
cross-checks the reference solution and the student's random-kernel output.

The Keras comparisons prove the model computes what Keras computes (strides,
'same' padding placement, odd sizes); the rest pin down evaluate(), the kernel
fit used for "you used a different kernel" feedback, and the errors."""

import itertools
import os
import zlib

import numpy as np
import pytest

from grader.checking.compute import ComputeError, conv2d, evaluate, fit_conv2d_kernel, max_pool2d
from grader.model.spec import Conv2D, MaxPool2D, Reshape

PADDINGS = ["valid", "same"]
STRIDES = [(1, 1), (2, 1), (1, 2), (2, 2), (3, 2)]
# (height, width, in_channels, filters, kernel_size)
CONV_SHAPES = [(7, 9, 1, 1, (3, 3)), (8, 5, 2, 3, (3, 3)), (6, 7, 3, 2, (2, 3))]
POOL_SHAPES = [(7, 9, 1, (2, 2)), (8, 5, 2, (3, 3)), (5, 6, 3, (2, 3))]


@pytest.fixture(scope="module")
def keras():
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf  # a project dependency: missing TensorFlow is a failure, not a skip

    tf.get_logger().setLevel("ERROR")
    import keras

    return keras


def _conv_case_id(case):
    (h, w, c, f, k), padding, strides = case
    return f"{h}x{w}x{c}-f{f}-k{k[0]}x{k[1]}-{padding}-s{strides[0]}{strides[1]}"


CONV_CASES = list(itertools.product(CONV_SHAPES, PADDINGS, STRIDES))


@pytest.mark.parametrize("shape, padding, strides", CONV_CASES, ids=[_conv_case_id(c) for c in CONV_CASES])
def test_conv2d_matches_keras(keras, shape, padding, strides):
    h, w, c, f, kernel_size = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, padding, strides)).encode()))
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    kernel = rng.normal(size=(*kernel_size, c, f)).astype(np.float32)
    bias = rng.normal(size=(f,)).astype(np.float32)

    layer = keras.layers.Conv2D(f, kernel_size, strides=strides, padding=padding)
    layer.build((None, h, w, c))
    layer.set_weights([kernel, bias])
    expected = np.asarray(layer(x))

    actual = conv2d(x.astype(np.float64), kernel.astype(np.float64), bias.astype(np.float64), strides, padding)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_matches_keras_on_the_exercise_layer(keras):
    """The assignment's own layer, Conv2D(1, (3, 3), strides=(2, 1)), on a
    0..255 image: shapes and values as the spec expects."""
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(1, 33, 20, 1)).astype(np.float32)
    layer = keras.layers.Conv2D(1, (3, 3), strides=(2, 1))
    layer.build((None, 33, 20, 1))
    kernel, bias = layer.get_weights()  # Keras' own random initial kernel
    expected = np.asarray(layer(img))
    actual = conv2d(img, kernel, bias, (2, 1), "valid")
    assert actual.shape == expected.shape == (1, 16, 18, 1)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-2)


POOL_CASES = list(itertools.product(POOL_SHAPES, PADDINGS, [None, *STRIDES]))


def _pool_case_id(case):
    (h, w, c, p), padding, strides = case
    s = "pool" if strides is None else f"{strides[0]}{strides[1]}"
    return f"{h}x{w}x{c}-p{p[0]}x{p[1]}-{padding}-s{s}"


@pytest.mark.parametrize("shape, padding, strides", POOL_CASES, ids=[_pool_case_id(c) for c in POOL_CASES])
def test_max_pool2d_matches_keras(keras, shape, padding, strides):
    h, w, c, pool_size = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, padding, strides)).encode()))
    # all-negative inputs: a zero-padded max pool would differ from Keras
    x = -rng.uniform(1, 10, size=(2, h, w, c)).astype(np.float32)
    layer = keras.layers.MaxPooling2D(pool_size=pool_size, strides=strides, padding=padding)
    expected = np.asarray(layer(x))
    actual = max_pool2d(x, pool_size, strides or pool_size, padding)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


# --- conv2d / max_pool2d by hand ------------------------------------------------


def test_conv2d_is_cross_correlation_not_flipped():
    x = np.arange(9, dtype=float).reshape(1, 3, 3, 1)
    kernel = np.zeros((3, 3, 1, 1))
    kernel[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each window
    assert conv2d(x, kernel, 0.0).ravel().tolist() == [0.0]
    kernel = np.zeros((2, 2, 1, 1))
    kernel[1, 1, 0, 0] = 1.0  # bottom-right of each 2x2 window
    assert conv2d(x, kernel, 0.0).reshape(2, 2).tolist() == [[4.0, 5.0], [7.0, 8.0]]


def test_conv2d_box_sum_and_bias():
    x = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    out = conv2d(x, np.ones((3, 3, 1, 1)), 10.0)
    assert out.shape == (1, 2, 2, 1)
    expected = [[x[0, i : i + 3, j : j + 3, 0].sum() + 10 for j in range(2)] for i in range(2)]
    assert out[0, :, :, 0].tolist() == expected


def test_conv2d_same_padding_puts_extra_zero_row_at_the_end():
    """TensorFlow pads 'same' with the odd extra row/column at the bottom/right."""
    x = np.ones((1, 4, 4, 1))
    out = conv2d(x, np.ones((2, 2, 1, 1)), 0.0, (1, 1), "same")
    assert out.shape == (1, 4, 4, 1)
    assert out[0, :, :, 0].tolist() == [[4, 4, 4, 2], [4, 4, 4, 2], [4, 4, 4, 2], [2, 2, 2, 1]]


@pytest.mark.parametrize(
    "h, w, strides, padding, out_hw",
    [
        (512, 512, (2, 1), "valid", (255, 510)),
        (512, 512, (1, 2), "valid", (510, 255)),
        (512, 512, (1, 1), "valid", (510, 510)),
        (512, 512, (1, 1), "same", (512, 512)),
        (512, 512, (2, 1), "same", (256, 512)),
        (7, 9, (3, 2), "same", (3, 5)),
        (7, 9, (3, 2), "valid", (2, 4)),
    ],
)
def test_conv2d_output_shapes(h, w, strides, padding, out_hw):
    out = conv2d(np.zeros((1, h, w, 1)), np.zeros((3, 3, 1, 1)), 0.0, strides, padding)
    assert out.shape == (1, *out_hw, 1)


def test_conv2d_bias_shape_checked():
    x = np.zeros((1, 4, 4, 2))
    kernel = np.zeros((3, 3, 2, 3))
    assert conv2d(x, kernel, np.array([1.0, 2.0, 3.0]))[0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert conv2d(x, kernel, np.array([5.0]))[0, 0, 0].tolist() == [5.0, 5.0, 5.0]
    with pytest.raises(ComputeError, match=r"bias must have shape \(3,\)"):
        conv2d(x, kernel, np.array([1.0, 2.0]))
    with pytest.raises(ComputeError, match="bias"):
        conv2d(x, kernel, np.zeros((3, 1)))


def test_conv2d_window_larger_than_input_is_compute_error():
    with pytest.raises(ComputeError, match="smaller than the window"):
        conv2d(np.zeros((1, 2, 5, 1)), np.zeros((3, 3, 1, 1)), 0.0)


def test_max_pool2d_same_padding_ignores_the_padding():
    x = -np.arange(1, 10, dtype=float).reshape(1, 3, 3, 1)
    out = max_pool2d(x, (2, 2), (2, 2), "same")
    assert out[0, :, :, 0].tolist() == [[-1.0, -3.0], [-7.0, -9.0]]


# --- evaluate -------------------------------------------------------------------


def _resolver(values):
    def resolve(name):
        return values[name]

    return resolve


def test_evaluate_reshape():
    op = Reshape(op="reshape", input="img", shape=[1, 4, 3, 1])
    img = np.arange(12, dtype=np.uint8).reshape(4, 3)
    out = evaluate(op, _resolver({"img": img}))
    assert out.shape == (1, 4, 3, 1) and out.dtype == np.float64
    assert out.ravel().tolist() == list(range(12))


def test_evaluate_conv2d_with_answer_kernel_and_bias():
    rng = np.random.default_rng(0)
    x, kernel, bias = rng.normal(size=(1, 9, 8, 1)), rng.normal(size=(3, 3, 1, 1)), rng.normal(size=(1,))
    op = Conv2D(op="conv2d", input="x", kernel="k", bias="b", strides=(2, 1))
    out = evaluate(op, _resolver({"x": x, "k": kernel, "b": bias}))
    assert out.shape == (1, 4, 6, 1)
    np.testing.assert_allclose(out, conv2d(x, kernel, bias, (2, 1), "valid"))
    assert out[0, 1, 2, 0] == pytest.approx(float((x[0, 2:5, 2:5, 0] * kernel[:, :, 0, 0]).sum() + bias[0]))


def test_evaluate_conv2d_with_constant_kernel_is_box_sum():
    x = np.random.default_rng(1).uniform(0, 255, size=(1, 6, 6, 2))
    op = Conv2D(op="conv2d", input="x", kernel=1.0, kernel_size=(3, 3), padding="same")
    out = evaluate(op, _resolver({"x": x}))
    assert out.shape == (1, 6, 6, 1)
    assert out[0, 2, 3, 0] == pytest.approx(x[0, 1:4, 2:5, :].sum())
    assert out[0, 0, 0, 0] == pytest.approx(x[0, 0:2, 0:2, :].sum())  # zero padding


def test_evaluate_maxpool_defaults_strides_to_pool_size():
    x = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    out = evaluate(MaxPool2D(op="maxpool2d", input="x"), _resolver({"x": x}))
    assert out[0, :, :, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]
    out = evaluate(MaxPool2D(op="maxpool2d", input="x", strides=(1, 1)), _resolver({"x": x}))
    assert out.shape == (1, 3, 3, 1)


def test_evaluate_reads_file_sources_through_resolve():
    seen = []

    def resolve(name):
        seen.append(name)
        return np.ones((1, 3, 3, 1))

    op = Conv2D(op="conv2d", input="file:data/x.npy", kernel=2.0)
    assert evaluate(op, resolve).ravel().tolist() == [18.0]
    assert seen == ["file:data/x.npy"]


@pytest.mark.parametrize(
    "op, values, message",
    [
        (Conv2D(op="conv2d", input="x", kernel=1.0), {"x": np.zeros((512, 512, 1))}, "must be a 4-D"),
        (Conv2D(op="conv2d", input="x", kernel=1.0), {"x": np.zeros((512, 512))}, "must be a 4-D"),
        (MaxPool2D(op="maxpool2d", input="x"), {"x": np.zeros((4, 4, 1))}, "must be a 4-D"),
        (
            Conv2D(op="conv2d", input="x", kernel="k"),
            {"x": np.zeros((1, 5, 5, 1)), "k": np.zeros((3, 3, 2, 1))},
            r"kernel must have shape \(3, 3, 1, filters\)",
        ),
        # a fake model's 96x96 kernel: refused before anything is computed (it once made the grader allocate 6.4 GB)
        (
            Conv2D(op="conv2d", input="x", kernel="k"),
            {"x": np.zeros((1, 512, 512, 1)), "k": np.ones((96, 96, 1, 1))},
            r"kernel must have shape \(3, 3, 1, filters\), not \(96, 96, 1, 1\)",
        ),
        # the right kernel size but 4096 filters: more memory than the grader allows for one check
        (
            Conv2D(op="conv2d", input="x", kernel="k"),
            {"x": np.zeros((1, 512, 512, 1)), "k": np.ones((3, 3, 1, 4096))},
            "more than the 512 MB the grader allows",
        ),
        (
            Conv2D(op="conv2d", input="x", kernel="k"),
            {"x": np.zeros((1, 5, 5, 1)), "k": np.zeros((3, 3))},
            "kernel must have shape",
        ),
        (Reshape(op="reshape", input="x", shape=[1, 512, 512, 1]), {"x": np.zeros((510, 510))}, "cannot reshape"),
        (
            Conv2D(op="conv2d", input="x", kernel=1.0, kernel_size=(5, 5)),
            {"x": np.zeros((1, 3, 3, 1))},
            "smaller than the window",
        ),
    ],
    ids=[
        "3d_input",
        "2d_input",
        "3d_pool_input",
        "kernel_channels",
        "kernel_96x96",
        "kernel_4096_filters",
        "kernel_2d",
        "reshape_impossible",
        "window_too_big",
    ],
)
def test_evaluate_bad_shapes_raise_compute_error(op, values, message):
    with pytest.raises(ComputeError, match=message):
        evaluate(op, _resolver(values))


def test_compute_error_names_the_input_and_its_shape():
    with pytest.raises(ComputeError) as info:
        evaluate(
            Conv2D(op="conv2d", input="img_tensor", kernel=1.0), _resolver({"img_tensor": np.zeros((1, 512, 512))})
        )
    assert "img_tensor" in str(info.value) and "(1, 512, 512)" in str(info.value)
    assert isinstance(info.value, ValueError)


# --- fit_conv2d_kernel ------------------------------------------------------------


@pytest.mark.parametrize(
    "channels, strides, padding",
    [
        (1, (2, 1), "valid"),
        (1, (1, 1), "same"),
        (2, (1, 2), "valid"),
        (3, (2, 2), "same"),
    ],
)
def test_fit_conv2d_kernel_recovers_kernel_and_bias(channels, strides, padding):
    rng = np.random.default_rng(channels)
    x = rng.uniform(0, 255, size=(1, 16, 14, channels))
    kernel = rng.normal(size=(3, 3, channels, 1))
    bias = 0.37
    y = conv2d(x, kernel, bias, strides, padding)
    fitted = fit_conv2d_kernel(x, y, (3, 3), strides, padding)
    assert fitted is not None
    fitted_kernel, fitted_bias = fitted
    assert fitted_kernel.shape == (3, 3, channels)
    np.testing.assert_allclose(fitted_kernel, kernel[..., 0], atol=1e-8)
    assert fitted_bias == pytest.approx(bias, abs=1e-6)


def test_fit_conv2d_kernel_on_float32_keras_like_output():
    """What a student's all-ones-not-set model really returns: float32."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(1, 40, 30, 1)).astype(np.float32)
    kernel = rng.uniform(-0.5, 0.5, size=(3, 3, 1, 1))
    y = conv2d(x, kernel, 0.0, (1, 1), "same").astype(np.float32)
    fitted = fit_conv2d_kernel(x, y, (3, 3), (1, 1), "same")
    assert fitted is not None
    np.testing.assert_allclose(fitted[0], kernel[..., 0], atol=1e-4)


def test_fit_conv2d_kernel_rejects_noise_and_non_convolutions():
    rng = np.random.default_rng(9)
    x = rng.uniform(0, 255, size=(1, 16, 14, 1))
    y = conv2d(x, rng.normal(size=(3, 3, 1, 1)), 0.0, (1, 1), "valid")
    assert fit_conv2d_kernel(x, rng.normal(size=y.shape), (3, 3), (1, 1), "valid") is None
    assert fit_conv2d_kernel(x, y**2, (3, 3), (1, 1), "valid") is None  # not linear in x
    assert fit_conv2d_kernel(x, y + rng.normal(0, 1.0, size=y.shape), (3, 3), (1, 1), "valid") is None
    # a 5x5 convolution is not a 3x3 one
    y5 = conv2d(x, rng.normal(size=(5, 5, 1, 1)), 0.0, (1, 1), "same")
    assert fit_conv2d_kernel(x, y5, (3, 3), (1, 1), "same") is None


@pytest.mark.parametrize("case", ["shape_mismatch", "two_filters", "nan", "inf", "3d_x", "3d_y"])
def test_fit_conv2d_kernel_returns_none_for_unusable_inputs(case):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, size=(1, 10, 10, 1))
    y = conv2d(x, rng.normal(size=(3, 3, 1, 1)), 0.0, (1, 1), "valid")
    if case == "shape_mismatch":
        y = y[:, :, :5]
    elif case == "two_filters":
        y = np.concatenate([y, y], axis=3)
    elif case == "nan":
        y[0, 0, 0, 0] = np.nan
    elif case == "inf":
        y[0, 3, 3, 0] = np.inf
    elif case == "3d_x":
        x = x[0]
    elif case == "3d_y":
        y = y[0]
    assert fit_conv2d_kernel(x, y, (3, 3), (1, 1), "valid") is None
