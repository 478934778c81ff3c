"""Figures for the HTML report, as base64 PNG data URIs.

Drawn on matplotlib's Agg canvas without pyplot: each figure is a plain
object that nothing registers globally, so there is no figure to forget to
close, no backend is switched under a caller, and memory is freed with the
object.  Images are small (``DPI``) and big arrays are reduced by blocks
before drawing, so a class of hundreds of pages stays quick to build.
"""

from __future__ import annotations

import base64
import io
import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

DPI = 80
PANEL_INCHES = (4.4, 3.5)  # one image of a comparison: 352 pixels wide, at most 280 high
MAX_SIDE = 256  # longest side of an image as drawn; bigger arrays are reduced by blocks
VALUES_CMAP = "gray"
DIFF_CMAP = "magma"


@dataclass(frozen=True)
class Plane:
    """The 2-D slice of an answer that is drawn."""

    values: np.ndarray  # 2-D float64
    where: str  # how it was taken from the array, e.g. "[0, :, :, 0]"; "" for the whole array


def plane(array: np.ndarray) -> Plane:
    """The image to show for an array: NHWC tensors as ``[0, :, :, 0]``,
    channels-first ones as ``[0, 0, :, :]``, vectors as a one-row strip."""
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    lead: list[str] = []
    while a.ndim > 4:  # leading axes beyond (batch, height, width, channels)
        a, lead = a[0], [*lead, "0"]
    if a.ndim == 4:
        channels_first = a.shape[3] > 4 and a.shape[1] <= 4
        a, index = (a[0, 0], ["0", "0", ":", ":"]) if channels_first else (a[0, :, :, 0], ["0", ":", ":", "0"])
    elif a.ndim == 3:
        channels_last = a.shape[2] <= 4 < a.shape[0]
        a, index = (a[:, :, 0], [":", ":", "0"]) if channels_last else (a[0], ["0", ":", ":"])
    else:
        index = [":"] * a.ndim if lead else []
        a = a.reshape(1, -1) if a.ndim < 2 else a
    where = f"[{', '.join(lead + index)}]" if lead or index else ""
    return Plane(np.asarray(a, dtype=np.float64), where)


def reduce_blocks(values: np.ndarray, how: str) -> np.ndarray:
    """Shrink a 2-D array so its longest side is at most ``MAX_SIDE``, each
    pixel the ``mean`` or ``max`` of its block (max keeps a single wrong
    element visible in a difference map).  NaN blocks stay NaN."""
    h, w = values.shape
    step = math.ceil(max(h, w) / MAX_SIDE)
    if step <= 1:
        return values
    padded = np.full((-(-h // step) * step, -(-w // step) * step), np.nan)
    padded[:h, :w] = values
    blocks = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        return (np.nanmax if how == "max" else np.nanmean)(blocks, axis=(1, 3))


def finite_range(*arrays: np.ndarray) -> tuple[float, float]:
    """The smallest and largest finite value over the arrays ((0, 1) if none)."""
    lows, highs = [], []
    for a in arrays:
        finite = a[np.isfinite(a)]
        if finite.size:
            lows.append(float(finite.min()))
            highs.append(float(finite.max()))
    if not lows:
        return 0.0, 1.0
    low, high = min(lows), max(highs)
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def image_panel(
    values: np.ndarray, title: str, label: str, vmin: float, vmax: float, *, difference: bool = False
) -> str:
    """One image with its colour bar (``label`` names the quantity and its
    units) as a PNG data URI.  Axes are in the array's own row/column
    coordinates even when the image was reduced for display."""
    h, w = values.shape
    shown = reduce_blocks(values, "max" if difference else "mean")
    finite = values[np.isfinite(values)]
    below, above = bool(finite.size and finite.min() < vmin), bool(finite.size and finite.max() > vmax)
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get((below, above), "neither")
    with _drawing:  # one figure of a shape for everyone: matplotlib's objects are not thread-safe
        panel = _template(h, w, difference, extend)
        panel.image.set_data(np.where(np.isfinite(shown), shown, np.nan))
        panel.image.set_clim(vmin, vmax)
        panel.colorbar.update_normal(panel.image)
        panel.colorbar.locator = MaxNLocator(5)  # few ticks: each one costs drawing time
        panel.colorbar.set_label(label, fontsize=8)
        panel.ax.set_title(title, fontsize=10)
        return png_data_uri(panel.fig)


@dataclass
class _Template:
    fig: Figure
    ax: Axes
    image: AxesImage
    colorbar: Colorbar


# Figures already laid out, by (height, width, difference, extend): making
# the axes and their ticks was half of each image's time, and a report draws
# the same few shapes over and over.  Shared by all threads, one drawing at a time.
_templates: dict[tuple[int, int, bool, str], _Template] = {}
_drawing = threading.Lock()
MAX_TEMPLATES = 16


def _template(h: int, w: int, difference: bool, extend: str) -> _Template:
    key = (h, w, difference, extend)
    if key in _templates:
        return _templates[key]
    if len(_templates) >= MAX_TEMPLATES:
        _templates.pop(next(iter(_templates)))
    wide = max(h, w) / max(min(h, w), 1) > 8  # a vector or a strip: fill the box instead
    fig, ax, cax = _panel(None if wide else h / w)
    # NaN/inf are drawn in a colour that no value has.
    colormap = colormaps[DIFF_CMAP if difference else VALUES_CMAP].with_extremes(
        bad="#00c8ff" if difference else "#ff2a2a"
    )
    image = ax.imshow(
        np.zeros((1, 1)),
        cmap=colormap,
        interpolation="nearest",
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        aspect="auto" if wide else "equal",
    )
    colorbar = fig.colorbar(image, cax=cax, extend=extend)
    colorbar.ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.set_xlabel("column", fontsize=8)
    ax.set_ylabel("row", fontsize=8)
    ax.tick_params(labelsize=7)
    _templates[key] = _Template(fig, ax, image, colorbar)
    return _templates[key]


def _panel(aspect: float | None) -> tuple[Figure, Axes, Axes]:
    """A figure holding the image's axes, as big as its aspect ratio (height /
    width; None: any) allows, and a colour bar of the same height beside it.
    The figure is as tall as the image needs.  Positions are computed, not
    laid out automatically: that would triple the drawing time."""
    width, max_height = PANEL_INCHES
    left, bottom, right, top = 0.55, 0.45, 1.05, 0.35  # inches kept for ticks, labels, colour bar, title
    box_w, box_h = width - left - right, max_height - bottom - top
    if aspect is not None:
        box_w, box_h = min(box_w, box_h / aspect), max(min(box_h, box_w * aspect), 1.6)  # the image keeps its aspect
    height = box_h + bottom + top
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((left / width, bottom / height, box_w / width, box_h / height))
    cax = fig.add_axes(((left + box_w + 0.12) / width, bottom / height, 0.14 / width, box_h / height))
    return fig, ax, cax


def score_histogram(scores: list[float], max_score: float) -> str:
    """How many submissions got each score."""
    fig = Figure(figsize=(6.0, 3.0), dpi=DPI + 10, layout="tight")
    ax = fig.add_subplot()
    whole = all(float(s).is_integer() for s in scores) and float(max_score).is_integer() and max_score <= 60
    edges = np.arange(-0.5, max_score + 1.0, 1.0) if whole else np.linspace(0.0, max(max_score, 1e-9), 21)
    # matplotlib's stub types bins as a Sequence, leaving out the arrays hist documents and takes
    ax.hist(scores, bins=edges, color="#3b6ea8", edgecolor="white")  # type: ignore[arg-type]
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"score (points out of {max_score:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"Scores of {len(scores)} submission(s)", fontsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=whole))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return png_data_uri(fig)


def png_data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    # zlib's fastest level: a third less drawing time per image, and no bigger for these
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
