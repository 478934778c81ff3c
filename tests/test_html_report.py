"""The HTML report: self-contained pages with the feedback and the figures,
escaped, that render in a real (headless) browser."""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from grader.checking.compute import conv2d
from grader.reports.html import (
    INDEX_FILE,
    common_mistakes,
    load_answer_arrays,
    page_name,
    write_report,
    write_submission_report,
)

GRADED = ["correct", "swapped_strides", "lesson_literal_random_kernel"]
EVIL_STEM = "x <b>&#?%'"
EVIL = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
# per page: images expected (answers with a value check x 3, 2 when the shapes differ, 1 when nothing to compare)
IMAGES = {"correct": 12, "swapped_strides": 10, "lesson_literal_random_kernel": 10, "index": 0, EVIL_STEM: 0}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]
# Paints every image on a canvas once the page has loaded (the load event
# waits for every image): a broken PNG has no size, a truncated one leaves its
# last row transparent (figures are opaque).  Synchronous on purpose: an
# awaited img.decode() could finish after Chromium dumped the page, which it
# did on a loaded 2-core machine.
IMG_PROBE = """<script>window.addEventListener("load", () => {
  const painted = (img) => {
    if (!img.src.startsWith("data:image/png;base64,")) return "not-a-data-uri";
    if (!img.complete || !img.naturalWidth) return "undecodable";
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    if (!canvas.width || !canvas.height) return "empty";
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const last = context.getImageData(0, canvas.height - 1, canvas.width, 1).data;
    for (let i = 3; i < last.length; i += 4) if (last[i] !== 255) return "truncated";
    return "ok";
  };
  const states = [...document.images].map(painted);
  const ok = states.filter(s => s === "ok").length;
  document.title = ok === states.length ? `imgs-ok:${ok}/${states.length}` : "imgs-bad:" + states.join(",");
});</script>"""


def student_answers(references):
    """Captured arrays as the batch saves them, simulated from the references:
    right, with the strides swapped, and the lesson's random kernel left in the
    padding='same' model (its random_kernel not saved)."""
    swap = {n: references[n].transpose(0, 2, 1, 3) for n in ("random_output", "average_output")}
    kernel = np.random.default_rng(0).normal(size=(3, 3, 1, 1))
    lesson = {
        **references,
        "same_output": conv2d(references["img_tensor"], kernel, 0.0, (1, 1), "same").astype(np.float32),
    }
    del lesson["random_kernel"]
    return {
        "correct": dict(references),
        "swapped_strides": {**references, **swap},
        "lesson_literal_random_kernel": lesson,
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory, graded, references, assignment):
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    (results / "answers").mkdir(parents=True)
    for name, arrays in student_answers(references).items():
        (results / f"{name}.json").write_text(graded(name).model_dump_json(indent=2))
        np.savez_compressed(results / "answers" / f"{name}.npz", **arrays)
    # a submission named like the class page, and one whose name and feedback
    # carry HTML; neither has saved answers
    named_index = graded("correct").model_copy(deep=True)
    named_index.assignment.reference_key = "0" * 64  # graded against older references
    (results / "index.json").write_text(named_index.model_dump_json())
    evil = graded("swapped_strides").model_copy(deep=True)
    evil.submission.file = EVIL + ".ipynb"
    evil.errors = [EVIL]
    evil.tests[2].output += "\nHint: " + EVIL
    evil.tests[2].diagnosis = EVIL
    (results / f"{EVIL_STEM}.json").write_text(evil.model_dump_json())
    (results / "summary.json").write_text("{}")
    (results / "broken.json").write_text("{not json")
    index = write_report(results, root / "report", assignment, references=references)
    return index


def pages(index: Path) -> dict[str, Path]:
    return {stem: index.parent / page_name(stem) for stem in IMAGES}


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def test_a_page_per_result_and_a_class_page(report):
    names = sorted(p.name for p in report.parent.iterdir())
    assert names == sorted([INDEX_FILE, "index.ipynb.html", f"{EVIL_STEM}.html"] + [f"{n}.html" for n in GRADED])
    assert page_name("index") == "index.ipynb.html" and page_name("Index") == "Index.ipynb.html"


@pytest.mark.parametrize("stem", list(IMAGES))
def test_pages_are_self_contained(report, stem):
    """No script, no external resource, a CSP forbidding them; every image a PNG data URI that decodes."""
    text = pages(report)[stem].read_text(encoding="utf-8")
    page = Page(text)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed", "base", "form")]
    csp = [m["content"] for m in page.all("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//|file:|javascript:)", text, re.I)
    images = page.all("img")
    assert len(images) == IMAGES[stem]
    for img in images:
        prefix, _, data = img["src"].partition(",")
        assert prefix == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as png:
            png.verify()
        assert img["alt"]


def test_class_page_links_every_student_and_only_local_pages(report):
    page = Page(report.read_text(encoding="utf-8"))
    targets = {unquote(a["href"]) for a in page.all("a")}
    assert targets == {page_name(s) for s in IMAGES}
    assert all((report.parent / t).is_file() for t in targets)
    assert len(page.all("img")) == 1  # the score histogram


def test_student_page_shows_score_verdicts_and_feedback(report, graded):
    page = Page(pages(report)["swapped_strides"].read_text(encoding="utf-8"))
    result = graded("swapped_strides")
    assert f"{result.score:g} / {result.max_score:g} points" in page.plain
    assert len([s for s in page.all("section") if "check" in s.get("class", "")]) == len(result.tests)
    assert len([s for s in page.all("section") if "passed" in s.get("class", "").split()]) == 4
    assert "Likely cause: The strides are swapped" in page.plain
    assert "Hint: Conv2D(1, (3, 3), strides=(2, 1)" in page.plain
    assert page.plain.count("The difference cannot be computed") == 2  # random_output, average_output
    assert "(1, 510, 255, 1)" in page.plain


def test_lesson_page_draws_the_wrong_kernel_and_says_what_it_cannot_compute(report):
    plain = Page(pages(report)["lesson_literal_random_kernel"].read_text(encoding="utf-8")).plain
    assert "follow the lesson literally" in plain
    assert "could not be computed from your answers: random_kernel was not captured" in plain
    differences = [float(x) for x in re.findall(r"Largest difference in this slice: ([-+.\de]+?)[.;] ", plain)]
    assert differences[:2] == [0, 0] and differences[2] > 10  # img_tensor and average_output right, same_output not


def test_correct_page_and_a_stale_page_without_saved_answers(report):
    correct = Page(pages(report)["correct"].read_text(encoding="utf-8")).plain
    assert "10 / 10 points" in correct and "Expected (the reference solution)" in correct
    assert "Expected (computed from your img_tensor, random_kernel and random_bias)" in correct
    no_answers = Page(pages(report)["index"].read_text(encoding="utf-8")).plain
    assert "10 / 10 points" in no_answers and "No figures: the captured arrays were not saved" in no_answers
    assert "graded against other reference answers" in no_answers and "other reference answers" not in correct


def test_text_from_results_is_escaped(report):
    text = pages(report)[EVIL_STEM].read_text(encoding="utf-8")
    page = Page(text)
    assert "<script>" not in text and "<img src=x" not in text
    assert EVIL in page.plain  # shown as text, where it was written
    index = Page(report.read_text(encoding="utf-8"))
    assert EVIL + ".ipynb" in index.plain and "<img src=x" not in report.read_text(encoding="utf-8")


def test_class_page_summarises_the_class(report):
    plain = Page(report.read_text(encoding="utf-8")).plain
    assert "Pass rate per check" in plain and "Exercise 4: same_output is the zero-padded box blur 2 4 / 5 80%" in plain
    assert "Most common mistakes" in plain and "Slowest notebooks" in plain
    # swapped strides: its two shape diagnoses, each also explaining the failed value check of that answer
    assert plain.count("The strides are swapped") >= 2
    assert "(no known cause recognised)" not in plain
    assert "Unreadable result files broken.json" in plain


def test_mistakes_group_by_diagnosis_ignoring_fitted_numbers(graded, assignment):
    lesson, other = graded("lesson_literal_random_kernel"), graded("lesson_literal_random_kernel").model_copy(deep=True)
    failed = next(t for t in other.tests if t.diagnosis)
    assert "(The kernel that fits your output:" in failed.diagnosis
    failed.diagnosis = (
        failed.diagnosis.split(" (The kernel")[0] + " (The kernel that fits your output: [[9 9 9]], bias 9.)"
    )
    plain = graded("correct").model_copy(deep=True)
    plain.tests[0].status, plain.tests[0].diagnosis = "failed", None
    mistakes = common_mistakes({"a": lesson, "b": other, "c": plain}, assignment)
    assert [len(m.students) for m in mistakes] == [2, 1]
    assert mistakes[0].text.startswith("Your output is a 3x3 convolution") and mistakes[0].students == ["a", "b"]
    assert mistakes[1].text == f"Failed “{plain.tests[0].name}” (no known cause recognised)"


def test_answer_files_are_read_without_pickle_and_with_limits(tmp_path):
    assert load_answer_arrays(tmp_path / "absent.npz", 1 << 20) == ({}, [])
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    arrays, problems = load_answer_arrays(tmp_path / "corrupt.npz", 1 << 20)
    assert arrays == {} and "could not be read" in problems[0]
    (tmp_path / "text.npz").write_text("hello")
    assert "is not an .npz file" in load_answer_arrays(tmp_path / "text.npz", 1 << 20)[1][0]
    np.savez(
        tmp_path / "mixed.npz",
        ok=np.ones((2, 2)),
        big=np.zeros(1 << 18),
        obj=np.array([{"a": 1}], dtype=object),
        text=np.array(["a"]),
    )
    arrays, problems = load_answer_arrays(tmp_path / "mixed.npz", 1 << 20)
    assert list(arrays) == ["ok"]
    assert len(problems) == 3 and any("larger than" in p for p in problems) and any("dtype <U1" in p for p in problems)
    only, problems = load_answer_arrays(tmp_path / "mixed.npz", 1 << 20, names={"ok", "absent"})
    assert list(only) == ["ok"] and problems == []  # only the assignment's answers are read
    np.save(tmp_path / "plain.npy", np.ones(3))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    assert load_answer_arrays(tmp_path / "plain.npz", 1 << 20)[0] == {}


def test_write_submission_report_for_one_student(tmp_path, graded, references, assignment):
    answers = student_answers(references)["lesson_literal_random_kernel"]
    out = write_submission_report(
        graded("lesson_literal_random_kernel"),
        answers,
        references,
        tmp_path / "me" / "check.html",
        assignment=assignment,
    )
    assert out == tmp_path / "me" / "check.html"
    assert len(Page(out.read_text(encoding="utf-8")).all("img")) == IMAGES["lesson_literal_random_kernel"]
    # without the assignment, a compute check's expected values are unknown: said, not guessed
    bare = write_submission_report(graded("correct"), references, references, tmp_path / "bare.html")
    assert "the assignment is needed to compute them" in Page(bare.read_text(encoding="utf-8")).plain
    assert len(Page(bare.read_text(encoding="utf-8")).all("img")) == 10


def test_odd_arrays_are_drawn_or_explained(tmp_path, graded, references, assignment):
    img = references["img_tensor"].astype(np.float64)
    img[0, :10, :10, 0] = np.nan
    answers = {
        "img_tensor": img,
        "random_output": np.arange(7.0),
        "average_output": np.ones((1, 1, 255, 510)),
        "same_output": np.array(3.0),
        "random_kernel": np.zeros((0, 3)),
        "random_bias": np.zeros(1),
    }
    out = write_submission_report(graded("correct"), answers, references, tmp_path / "odd.html", assignment=assignment)
    plain = Page(out.read_text(encoding="utf-8")).plain
    assert "100 NaN/inf elements (in blue)" in plain
    assert "random_output of shape (7,)" in plain and "average_output[0, 0, :, :] of shape (1, 1, 255, 510)" in plain
    assert plain.count("The difference cannot be computed") == 2  # average_output, same_output
    assert "could not be computed from your answers" in plain  # random_output from an empty kernel


# --- in a real browser ------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if binary is None:
        pytest.skip(
            "headless Chromium is not installed (Debian: apt-get install -y chromium); "
            "the in-browser checks of the HTML report need it"
        )
    return binary


def render(chromium: str, page: Path, profile: Path) -> tuple[str, str]:
    """The DOM after load, and the browser's console and CSP messages."""
    run = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [
        line
        for line in run.stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "Content Security Policy" in line
    ]
    return run.stdout, "\n".join(console)


@pytest.mark.parametrize("stem", list(IMAGES) + [INDEX_FILE])
def test_pages_render_in_headless_chromium_with_every_image_loaded(report, chromium, stem, tmp_path):
    page = report if stem == INDEX_FILE else pages(report)[stem]
    # a test copy with a probe script (the report itself has, and allows, none)
    text = page.read_text(encoding="utf-8")
    probe = tmp_path / page.name
    probe.write_text(
        text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1).replace(
            "</body>", IMG_PROBE + "</body>", 1
        ),
        encoding="utf-8",
    )
    dom, console = render(chromium, probe, tmp_path / "profile")
    assert console == ""
    title = re.search(r"<title>(.*?)</title>", dom).group(1)
    expected = 1 if stem == INDEX_FILE else IMAGES[stem]
    assert title == f"imgs-ok:{expected}/{expected}"
    rendered = Page(dom)
    assert [i["src"][:22] for i in rendered.all("img")] == ["data:image/png;base64,"] * expected
    assert len(rendered.all("script")) == 1  # the probe: nothing from the results became markup
    assert rendered.all("main") and (rendered.all("h1") or stem == INDEX_FILE)


def _pixels(uri: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as png:
        return np.asarray(png.convert("RGBA"))


RED = (255, 42, 42)  # NaN on a gray scale


def _region(pixels: np.ndarray, *colours, least: int = 1) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), inclusive, of the rows and columns with at
    least ``least`` pixels of exactly these colours (the colour bar has a
    row of each gray, and the image's box more)."""
    hits = np.any([np.all(pixels[..., :3] == c, axis=-1) for c in colours], axis=0)
    rows, cols = np.nonzero(hits.sum(axis=1) >= least)[0], np.nonzero(hits.sum(axis=0) >= least)[0]
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("h, w", [(255, 510), (512, 512), (40, 20), (7, 300), (1, 30)])
def test_an_image_shows_each_element_where_it_is(h, w):
    """Left half 0, right half 1, on a scale from -1 to 2 (gray 85 and 170),
    one NaN in the top left corner: two boxes side by side, as tall as each
    other, in the array's aspect ratio (strips and vectors fill the box), and
    the NaN drawn in red in the corner even where the array is reduced."""
    from grader.reports.figures import image_panel

    values = np.zeros((h, w))
    values[:, w // 2 :] = 1.0
    values[0, 0] = np.nan
    pixels = _pixels(image_panel(values, "halves", "value", -1.0, 2.0))
    left, right = _region(pixels, (85, 85, 85), RED, least=20), _region(pixels, (170, 170, 170), least=20)
    assert left[:2] == right[:2] and left[3] + 1 == right[2]  # the same rows, adjacent
    height, width = left[1] - left[0] + 1, right[3] - left[2] + 1
    assert abs((left[3] - left[2] + 1) - width * (w // 2) / w) <= 2
    if max(h, w) / min(h, w) <= 8:
        assert abs(height / width - h / w) < 0.05 or height == 128  # the smallest box a wide array gets
    assert _region(pixels, RED)[::2] == (left[0], left[2])


@pytest.mark.parametrize(
    "vmin, vmax, labels",
    [
        (0, 1, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
        (-3, 0.5, ["−2.4", "−1.6", "−0.8", "0"]),
        (0, 255, ["0", "60", "120", "180", "240"]),
        (0, 3e-4, ["0", "6.0e−05", "1.2e−04", "1.8e−04", "2.4e−04", "3.0e−04"]),
        (1000, 1000.5, ["1000.0", "1000.1", "1000.2", "1000.3", "1000.4", "1000.5"]),
        (12345, 1e6, ["2e+05", "4e+05", "6e+05", "8e+05", "1e+06"]),
    ],
)
def test_colour_bar_labels_are_round_values_inside_the_scale(vmin, vmax, labels):
    """As many digits as tell the ticks apart, no more; a real minus sign."""
    from grader.reports.figures import _value_ticks

    ticks = _value_ticks(vmin, vmax)
    assert list(ticks.values()) == labels
    assert all(vmin <= v <= vmax for v in ticks)


@pytest.mark.parametrize(
    "n, ticks",
    [
        (1, [0]),
        (5, [0, 1, 2, 3, 4]),
        (30, [0, 10, 20]),
        (255, [0, 100, 200]),
        (510, [0, 200, 400]),
        (1000, [0, 200, 400, 600, 800]),
    ],
)
def test_axes_are_numbered_by_whole_rows_and_columns(n, ticks):
    from grader.reports.figures import _index_ticks

    assert list(_index_ticks(n)) == ticks


@pytest.mark.parametrize("vmax, gray", [(2.0, 64), (1.0, 128), (4.0, 32)])
def test_an_image_follows_its_colour_scale(vmax, gray):
    """0.5 drawn on a gray scale from 0 to vmax has the gray 0.5 / vmax of white."""
    from grader.reports.figures import image_panel

    pixels = _pixels(image_panel(np.full((64, 64), 0.5), "constant", "value", 0.0, vmax))[..., :3].astype(int)
    near = np.all(np.abs(pixels - gray) <= 2, axis=-1).sum()
    assert near > 0.8 * 200 * 200, f"{near} pixels of gray {gray}"  # the image box is over 200 pixels square
