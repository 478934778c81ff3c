"""Independent NumPy computations of what an answer must be.

Used to cross-check the reference solution (a broken solution is caught before
it grades anyone), to check answers that depend on the student's own random
kernel, and to recognise a convolution done with some other kernel.  Computed
in float64 with plain NumPy, never with TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from grader.model.spec import Computation, Conv2D, MaxPool2D, Reshape, Source

Resolve = Callable[[str], np.ndarray]


MEMORY_BUDGET = 512 * 2**20  # bytes one computation may allocate in the grader's process


class ComputeError(ValueError):
    """The inputs do not fit the computation (wrong shapes, or too large to
    compute within the grader's budget); the message says how."""


def _within_budget(what: str, *shapes: tuple[int, ...]) -> None:
    """Refuse a computation whose arrays (float64) would exceed the budget:
    the inputs come from the student's process, which chooses their shapes."""
    needed = 8 * sum(int(np.prod(shape, dtype=object)) for shape in shapes)
    if needed > MEMORY_BUDGET:
        raise ComputeError(
            f"{what} would need {needed / 2**20:,.0f} MB, more than the "
            f"{MEMORY_BUDGET // 2**20} MB the grader allows for one check"
        )


def evaluate(computation: Computation, resolve: Resolve) -> np.ndarray:
    if isinstance(computation, Reshape):
        x = resolve(computation.input)
        try:
            return np.asarray(x, dtype=np.float64).reshape(computation.shape)
        except ValueError as exc:
            raise ComputeError(f"cannot reshape {x.shape} to {tuple(computation.shape)}") from exc
    x = _nhwc(resolve(computation.input), computation.input)
    if isinstance(computation, Conv2D):
        kernel = _kernel(computation, resolve, x.shape[3])
        bias = _value(computation.bias, resolve)
        return conv2d(x, kernel, bias, computation.strides, computation.padding)
    if isinstance(computation, MaxPool2D):
        return max_pool2d(x, computation.pool_size, computation.strides or computation.pool_size, computation.padding)
    raise ComputeError(f"unknown computation {computation!r}")


def _value(source: Source, resolve: Resolve) -> np.ndarray:
    return np.asarray(source if isinstance(source, (int, float)) else resolve(source), dtype=np.float64)


def _nhwc(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ComputeError(f"{name} must be a 4-D (batch, height, width, channels) tensor, not shape {x.shape}")
    return x


def _kernel(op: Conv2D, resolve: Resolve, channels: int) -> np.ndarray:
    if isinstance(op.kernel, (int, float)):
        return np.full((*op.kernel_size, channels, 1), float(op.kernel))
    kernel = np.asarray(resolve(op.kernel), dtype=np.float64)
    if kernel.ndim != 4 or kernel.shape[:3] != (*op.kernel_size, channels):
        kh, kw = op.kernel_size
        raise ComputeError(f"the kernel must have shape ({kh}, {kw}, {channels}, filters), not {kernel.shape}")
    return kernel


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(size / stride), extra padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, window: tuple[int, ...], strides: tuple[int, ...], padding: str, fill: float) -> np.ndarray:
    """(N, H', W', C, kh, kw) views of the input under each window position."""
    kh, kw = window
    if padding == "same":
        pads = [(0, 0), _same_padding(x.shape[1], kh, strides[0]), _same_padding(x.shape[2], kw, strides[1]), (0, 0)]
        x = np.pad(x, pads, constant_values=fill)
    if x.shape[1] < kh or x.shape[2] < kw:
        raise ComputeError(f"the input {x.shape} is smaller than the window {window}")
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return view[:, :: strides[0], :: strides[1]]


def conv2d(
    x: np.ndarray, kernel: np.ndarray, bias: npt.ArrayLike, strides: tuple[int, int] = (1, 1), padding: str = "valid"
) -> np.ndarray:
    """Keras Conv2D (a cross-correlation): NHWC input, HWIO kernel.  Summed
    one kernel position at a time, so memory stays a few times the output's."""
    bias = np.asarray(bias, dtype=np.float64)
    if bias.ndim > 1 or (bias.ndim == 1 and bias.shape[0] not in (1, kernel.shape[3])):
        raise ComputeError(f"the bias must have shape ({kernel.shape[3]},), not {bias.shape}")
    windows = _windows(x, kernel.shape[:2], strides, padding, 0.0)
    n, h, w, c = windows.shape[:4]
    _within_budget("this convolution", (n, h, w, kernel.shape[3]), (n, h, w, kernel.shape[3]), (n, h, w, c))
    out = np.zeros((n, h, w, kernel.shape[3]))
    for i, j in np.ndindex(*kernel.shape[:2]):
        # One input channel: a broadcast product gives the same numbers as the
        # matmul, which would copy the strided views first.
        if c == 1:
            out += windows[..., 0, i, j, None] * kernel[i, j, 0]
        else:
            out += windows[..., i, j] @ kernel[i, j]
    return out + bias


def max_pool2d(
    x: np.ndarray, pool_size: tuple[int, int], strides: tuple[int, int], padding: str = "valid"
) -> np.ndarray:
    windows = _windows(x, tuple(pool_size), tuple(strides), padding, -np.inf)
    _within_budget("this pooling", windows.shape[:4], windows.shape[:4])
    return windows.max(axis=(4, 5))


def fit_conv2d_kernel(
    x: np.ndarray,
    y: np.ndarray,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    rel_residual: float = 1e-4,
) -> tuple[np.ndarray, float] | None:
    """Least-squares (kernel, bias) such that conv2d(x, kernel) + bias ~= y,
    for a single-filter convolution; None if no kernel of that size fits."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 4 or y.ndim != 4 or y.shape[3] != 1 or not np.isfinite(y).all():
        return None
    windows = _windows(x, tuple(kernel_size), tuple(strides), padding, 0.0)
    if windows.shape[:3] != y.shape[:3]:
        return None
    kh, kw, channels = *kernel_size, x.shape[3]
    try:
        _within_budget("fitting a kernel", (int(np.prod(y.shape[:3])), kh * kw * channels + 2))
    except ComputeError:
        return None  # no diagnosis rather than a grader out of memory
    design = np.empty((int(np.prod(y.shape[:3])), kh * kw * channels + 1), order="F")  # a row per output pixel
    for column, (i, j, c) in enumerate(np.ndindex(kh, kw, channels)):  # the kernel's (HWI) order
        design[:, column] = windows[:, :, :, c, i, j].ravel()
    design[:, -1] = 1.0  # the bias
    # The normal equations: (weights+1)^2 numbers instead of a least-squares
    # solve on a million-row matrix (8x faster on a 512x512 image); the
    # residual below is measured on the full system, so a poor fit is refused.
    solution, *_ = np.linalg.lstsq(design.T @ design, design.T @ y.ravel(), rcond=None)
    residual = np.linalg.norm(design @ solution - y.ravel())
    if residual > rel_residual * max(float(np.linalg.norm(y)), 1e-12):
        return None
    kernel = solution[:-1].reshape(*kernel_size, x.shape[3])
    return kernel, float(solution[-1])
