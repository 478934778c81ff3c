"""Figures for the HTML report, as base64 PNG data URIs.

A comparison's images are drawn with Pillow: the array through a matplotlib
colour map, scaled to its box pixel for pixel (nearest neighbour), and the
frame, ticks, colour bar and labels drawn around it in matplotlib's own font.
matplotlib's renderer spent tens of milliseconds per image, most of them
laying out tick text, and a feedback page has up to a dozen images; these
take a few, and hold nothing shared between threads but read-only colour maps.
Big arrays are reduced by blocks before drawing.

The class page's histogram, one per report, is a matplotlib figure, drawn on
the Agg canvas without pyplot: nothing registers it globally and no backend
is switched under a caller.
"""

from __future__ import annotations

import base64
import io
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

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
    element visible in a difference map).  A block with a NaN is NaN, so
    that one NaN stays visible too."""
    h, w = values.shape
    step = math.ceil(max(h, w) / MAX_SIDE)
    if step <= 1:
        return values
    rows, cols = -(-h // step), -(-w // step)
    padded = np.full((rows * step, cols * step), np.nan)  # the edge blocks' missing elements
    padded[:h, :w] = values
    blocks = padded.reshape(rows, step, cols, step)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in a mean
        reduced = (np.nanmax if how == "max" else np.nanmean)(blocks, axis=(1, 3))
    nan = np.isnan(values)
    if nan.any():
        marked = np.zeros((rows * step, cols * step), dtype=bool)
        marked[:h, :w] = nan
        reduced[marked.reshape(rows, step, cols, step).any(axis=(1, 3))] = np.nan
    return reduced


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
    coordinates even when the image was reduced for display.  Values outside
    ``vmin``..``vmax`` take the colour bar's end colours, and the bar ends in
    an arrow on that side; NaN and inf are drawn in a colour no value has."""
    h, w = values.shape
    shown = reduce_blocks(values, "max" if difference else "mean")
    finite = values[np.isfinite(values)]
    below, above = bool(finite.size and finite.min() < vmin), bool(finite.size and finite.max() > vmax)
    colormap = _COLORMAPS[difference]
    box_w, box_h = _box(h, w)
    ticks = _value_ticks(vmin, vmax)
    tick_font, label_font, title_font = _font(TICK_PX), _font(LABEL_PX), _font(TITLE_PX)
    bar_x = LEFT + box_w + BAR_GAP
    labels_right = bar_x + BAR_W + 5 + max((_text_width(t, tick_font) for t in ticks.values()), default=0)
    canvas = Image.new("RGB", (max(WIDTH, labels_right + 6 + LABEL_PX + 4), TOP + box_h + BOTTOM), "white")
    draw = ImageDraw.Draw(canvas)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scaled = (np.where(np.isfinite(shown), shown, np.nan) - vmin) / (vmax - vmin if vmax > vmin else 1.0)
    pixels = Image.fromarray(np.ascontiguousarray(colormap(scaled, bytes=True)[..., :3]))
    canvas.paste(pixels.resize((box_w, box_h), Image.Resampling.NEAREST), (LEFT, TOP))
    draw.rectangle((LEFT - 1, TOP - 1, LEFT + box_w, TOP + box_h), outline="black")

    # the axes: integer rows and columns at their pixels' centres
    bottom = TOP + box_h
    for col in _index_ticks(w):
        x = LEFT + round((col + 0.5) / w * box_w)
        draw.line((x, bottom, x, bottom + TICK_LEN), fill="black")
        draw.text((x, bottom + TICK_LEN + 1), str(col), fill="black", font=tick_font, anchor="mt")
    widest_row = 0
    for row in _index_ticks(h):
        y = TOP + round((row + 0.5) / h * box_h)
        draw.line((LEFT - 1 - TICK_LEN, y, LEFT - 1, y), fill="black")
        draw.text((LEFT - 2 - TICK_LEN, y), str(row), fill="black", font=tick_font, anchor="rm")
        widest_row = max(widest_row, _text_width(str(row), tick_font))
    draw.text(
        (LEFT + box_w // 2, bottom + TICK_LEN + TICK_PX + 4), "column", fill="black", font=label_font, anchor="mt"
    )
    _upright(
        canvas,
        "row",
        label_font,
        (max(LABEL_PX // 2 + 1, LEFT - 4 - TICK_LEN - widest_row - LABEL_PX), TOP + box_h // 2),
    )
    draw.text((LEFT + box_w // 2, TOP - 5), title, fill="black", font=title_font, anchor="md")

    # the colour bar, highest value on top; an arrow for values beyond an end
    arrow = max(4, round(ARROW_FRACTION * box_h))
    top, end = TOP + (arrow if above else 0), bottom - (arrow if below else 0)
    ramp = colormap(np.linspace(1.0, 0.0, end - top).reshape(-1, 1), bytes=True)[..., :3]
    canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(ramp, BAR_W, axis=1))), (bar_x, top))
    middle = bar_x + BAR_W // 2
    if above:
        draw.polygon(
            [(bar_x, top), (bar_x + BAR_W, top), (middle, TOP)], fill=_rgb(colormap.get_over()), outline="black"
        )
    if below:
        draw.polygon(
            [(bar_x, end), (bar_x + BAR_W, end), (middle, bottom)], fill=_rgb(colormap.get_under()), outline="black"
        )
    draw.rectangle((bar_x - 1, top - 1, bar_x + BAR_W, end), outline="black")
    for value, text in ticks.items():
        y = end - round((value - vmin) / (vmax - vmin) * (end - top)) if vmax > vmin else end
        draw.line((bar_x + BAR_W, y, bar_x + BAR_W + TICK_LEN - 1, y), fill="black")
        draw.text((bar_x + BAR_W + TICK_LEN + 1, y), text, fill="black", font=tick_font, anchor="lm")
    _upright(canvas, label, label_font, (labels_right + 6 + LABEL_PX // 2, TOP + box_h // 2))
    return png_data_uri(canvas)


# Layout in pixels: a panel is WIDTH wide and at most MAX_HEIGHT high, the
# image's box as big as its aspect ratio allows between the margins.
WIDTH, MAX_HEIGHT = round(PANEL_INCHES[0] * DPI), round(PANEL_INCHES[1] * DPI)
LEFT, BOTTOM, RIGHT, TOP = 44, 36, 84, 28  # kept for ticks and labels, the colour bar, the title
MIN_BOX_HEIGHT = 128
BAR_GAP, BAR_W, TICK_LEN = 10, 11, 4
ARROW_FRACTION = 0.05  # of the bar's height, as matplotlib draws its extensions
TICK_PX, LABEL_PX, TITLE_PX = 8, 9, 11  # font sizes: 7, 8 and 10 points at DPI
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"  # shipped with matplotlib

# NaN/inf are drawn in a colour that no value has.
_COLORMAPS = {
    False: colormaps[VALUES_CMAP].with_extremes(bad="#ff2a2a"),
    True: colormaps[DIFF_CMAP].with_extremes(bad="#00c8ff"),
}
for _colormap in _COLORMAPS.values():
    _colormap(0.0)  # builds its lookup table now, not in two threads at once


def _box(h: int, w: int) -> tuple[int, int]:
    """The image box's width and height for an array of ``h`` x ``w``: its
    aspect ratio kept, except for vectors and strips, which fill the box."""
    box_w, box_h = WIDTH - LEFT - RIGHT, MAX_HEIGHT - TOP - BOTTOM
    if max(h, w) / max(min(h, w), 1) > 8:
        return box_w, box_h
    aspect = h / w
    return round(min(box_w, box_h / aspect)), round(max(min(box_h, box_w * aspect), MIN_BOX_HEIGHT))


def _index_ticks(n: int) -> range:
    """At most five row or column numbers from 0, a round step apart (1, 2,
    2.5 or 5 times a power of ten, a whole number)."""
    raw = max(1.0, n / 5)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (m * magnitude for m in (1, 2, 2.5, 5, 10))
    return range(0, n, int(next(s for s in steps if s >= raw and float(s).is_integer())))


def _value_ticks(vmin: float, vmax: float) -> dict[float, str]:
    """At most six round values within the colour scale, with labels that
    show their differences and no more digits."""
    values = [float(v) for v in MaxNLocator(5).tick_values(vmin, vmax)]
    slack = (vmax - vmin) * 1e-9
    values = [min(max(v, vmin), vmax) for v in values if vmin - slack <= v <= vmax + slack]  # no rounding error out
    if not values:
        return {}
    step = values[1] - values[0] if len(values) > 1 else abs(values[0]) or 1.0
    biggest = max(abs(v) for v in values)
    scientific = biggest >= 1e5 or 0 < biggest < 1e-3
    for digits in range(12):
        texts = [f"{v:.{digits}e}" if scientific else f"{v:.{digits}f}" for v in values]
        if all(abs(float(t) - v) <= step * 1e-6 for t, v in zip(texts, values, strict=True)):
            break
    return {v: ("0" if float(t) == 0 else t.replace("-", "\N{MINUS SIGN}")) for v, t in zip(values, texts, strict=True)}


_fonts = threading.local()  # FreeType faces are not to be shared by threads drawing at once


def _font(size: int) -> ImageFont.FreeTypeFont:
    cache = _fonts.__dict__.setdefault("by_size", {})
    if size not in cache:
        cache[size] = ImageFont.truetype(str(FONT), size)
    return cache[size]


def _text_width(text: str, font: ImageFont.FreeTypeFont) -> int:
    return math.ceil(font.getlength(text))


def _upright(canvas: Image.Image, text: str, font: ImageFont.FreeTypeFont, centre: tuple[int, int]) -> None:
    """``text`` read from bottom to top, centred on ``centre``."""
    left, top, right, bottom = (math.ceil(c) for c in font.getbbox(text))
    mask = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(mask).text((1 - left, 1 - top), text, fill=255, font=font)
    mask = mask.transpose(Image.Transpose.ROTATE_90)
    canvas.paste((0, 0, 0), (centre[0] - mask.width // 2, centre[1] - mask.height // 2), mask)


def _rgb(rgba: tuple[float, ...] | np.ndarray) -> tuple[int, int, int]:
    r, g, b = (round(float(c) * 255) for c in rgba[:3])
    return r, g, b


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


def png_data_uri(image: Figure | Image.Image) -> str:
    buffer = io.BytesIO()
    # zlib's fastest level: a third less encoding time per image, and no bigger for these
    if isinstance(image, Figure):
        FigureCanvasAgg(image).print_png(buffer, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    else:
        image.save(buffer, "png", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
