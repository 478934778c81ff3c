"""Students check their work without the solution: per-check visibility, the
kit `grader release` builds (audited file by file), `grader check` inside it
with an empty cache, and `grader.check()` inside a running Jupyter kernel."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import FIXTURES, ROOT

from grader.errors import SpecError
from grader.model.assignment import load_assignment
from grader.model.spec import load_spec

HIDDEN = "Exercise 4: same_output is the zero-padded box blur"
AFTER_DUE = "Exercise 4: same_output has shape (1, 512, 512, 1)"


def with_visibility(spec_text: str, visibilities: dict[str, str]) -> str:
    for name, visibility in visibilities.items():
        line = f'name = "{name}"\n'
        assert line in spec_text
        spec_text = spec_text.replace(line, f'{line}visibility = "{visibility}"\n')
    return spec_text


@pytest.fixture
def spec_with_hidden(tmp_path):
    path = tmp_path / "assignment.toml"
    text = (ROOT / "assignments/conv2d/assignment.toml").read_text()
    path.write_text(with_visibility(text, {HIDDEN: "hidden", AFTER_DUE: "after_due_date"}))
    return load_spec(path)


# --- visibility in the spec -------------------------------------------------------------------------------------


def test_students_see_the_visible_checks_and_how_much_is_left_out(spec_with_hidden):
    students = spec_with_hidden.for_students()
    assert [c.name for c in students.checks] == [c.name for c in spec_with_hidden.checks][:6]
    assert (students.withheld.checks, students.withheld.points) == (2, 3.0)
    assert "same_output" not in students.answers  # only the hidden checks read it
    assert students.reference_answers() == {"img_tensor", "average_output", "random_kernel", "random_bias"}
    assert students.for_students() == students  # a kit's spec is its own student copy


def test_a_spec_with_no_visible_check_cannot_be_checked_locally(tmp_path):
    text = (ROOT / "assignments/conv2d/assignment.toml").read_text()
    names = re.findall(r'^name = "(.*)"$', text, re.M)
    path = tmp_path / "assignment.toml"
    path.write_text(with_visibility(text, dict.fromkeys(names, "hidden")))
    with pytest.raises(SpecError, match="no check is visible to students"):
        load_spec(path).for_students()


@pytest.mark.parametrize("bad", ["secret", "Hidden", ""])
def test_an_unknown_visibility_is_a_spec_error(tmp_path, bad):
    path = tmp_path / "assignment.toml"
    path.write_text(with_visibility((ROOT / "assignments/conv2d/assignment.toml").read_text(), {HIDDEN: bad}))
    with pytest.raises(SpecError, match="visibility"):
        load_spec(path)


def test_gradescope_takes_each_checks_visibility_from_the_spec_and_hide_overrides(tmp_path):
    from grader.platforms.gradescope.bundle import BundleError, check_visibilities

    root = tmp_path / "root"
    shutil.copytree(ROOT / "assignments/conv2d", root / "assignments/conv2d", ignore=shutil.ignore_patterns("examples"))
    spec = root / "assignments/conv2d/assignment.toml"
    spec.write_text(with_visibility(spec.read_text(), {HIDDEN: "hidden", AFTER_DUE: "after_due_date"}))
    assignment = load_assignment("conv2d", root)
    first = "Exercise 1: img_tensor has shape (1, 512, 512, 1)"
    assert check_visibilities(assignment, "visible", {}) == {HIDDEN: "hidden", AFTER_DUE: "after_due_date"}
    assert check_visibilities(assignment, "visible", {first: "hidden", AFTER_DUE: "hidden"}) == {
        HIDDEN: "hidden",
        AFTER_DUE: "hidden",
        first: "hidden",
    }
    with pytest.raises(BundleError, match="no check named 'nope'"):
        check_visibilities(assignment, "visible", {"nope": "hidden"})


# --- the kit ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course whose conv2d hides two checks, and its student kit (built once)."""
    root = tmp_path_factory.mktemp("course")
    for folder in ("assignments", "solutions"):
        shutil.copytree(ROOT / folder / "conv2d", root / folder / "conv2d")
    spec = root / "assignments/conv2d/assignment.toml"
    spec.write_text(with_visibility(spec.read_text(), {HIDDEN: "hidden", AFTER_DUE: "after_due_date"}))
    kit = root.parent / f"{root.name}-kit"
    from grader.cli import main

    assert main(["release", str(root / "assignments/conv2d"), "--out", str(kit), "--zip", str(kit) + ".zip"]) == 0
    return root, kit


def test_the_kit_holds_only_what_students_need(course):
    root, kit = course
    files = sorted(p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file())
    key = (kit / "assignments/conv2d/.references/conv2d/reference-key").read_text().strip()
    assert files == sorted(
        [
            "README.md",
            "kit.json",
            "conv2d.ipynb",
            "ascent.npy",
            "assignments/conv2d/assignment.toml",
            "assignments/conv2d/conv2d.ipynb",
            "assignments/conv2d/data/ascent.npy",
            "assignments/conv2d/requirements.txt",
            "assignments/conv2d/.references/conv2d/reference-key",
            *(
                f"assignments/conv2d/.references/conv2d/{key[:32]}/{name}"
                for name in (
                    "manifest.json",
                    "img_tensor.npy",
                    "average_output.npy",
                    "random_kernel.npy",
                    "random_bias.npy",
                )
            ),
        ]
    )
    assert (kit / "conv2d.ipynb").read_bytes() == (root / "assignments/conv2d/conv2d.ipynb").read_bytes()


def test_nothing_in_the_kit_is_the_solution_or_reveals_a_hidden_answer(course):
    """The audit: no file is the solution or an example (finished notebooks),
    no text names a hidden check or holds a digest of the solution, and no
    array is the expected value of an answer only hidden checks read."""
    from grader.grading.references import load_references, reference_key

    root, kit = course
    full = load_assignment("conv2d", root)
    solution = (root / "solutions/conv2d/conv2d.ipynb").read_bytes()
    secrets = [hashlib.sha256(solution).hexdigest(), reference_key(full), HIDDEN, AFTER_DUE]
    hidden_reference = load_references(full)["same_output"]
    examples = {p.read_bytes() for p in (ROOT / "assignments/conv2d/examples").glob("*.ipynb")}
    for path in (p for p in kit.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert data != solution and data not in examples, path
        text = data.decode("utf-8", "replace")
        assert not [s for s in secrets if s in text], path
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            assert array.shape != hidden_reference.shape or not np.allclose(array, hidden_reference), path
        if path.suffix == ".ipynb":
            code = "".join(c.source for c in nbformat.reads(text, as_version=4).cells if c.cell_type == "code")
            assert "np.ones" not in code and "padding='same'" not in code.replace('"', "'"), path
    spec = load_spec(kit / "assignments/conv2d/assignment.toml")
    assert all(c.visibility == "visible" for c in spec.checks)
    assert (spec.withheld.checks, spec.withheld.points) == (2, 3.0)
    assert "2 more check(s), worth 3 points, run only when your submission is graded" in (kit / "README.md").read_text()


def test_a_kit_refuses_to_overwrite_a_folder_with_something_in_it(course, capsys):
    from grader.cli import main

    root, kit = course
    assert main(["release", str(root / "assignments/conv2d"), "--out", str(kit)]) == 3
    assert "not empty" in capsys.readouterr().err


def run_check(notebook: Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRADER_ROOT"} | {"GRADER_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "grader.cli", "check", str(notebook), "--no-html", "--executor", "kernel"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_checking_in_the_kit_gives_the_instructors_visible_scores(course, tmp_path):
    """On every bundled example: the kit, with no solution and an empty cache,
    scores each visible check as the instructor's grader does."""
    from grader.execution.kernel import KernelExecutor
    from grader.grading.grade import grade
    from grader.grading.references import load_references, reference_key

    root, kit = course
    full = load_assignment("conv2d", root)
    references, key = load_references(full), reference_key(full)
    in_kit = load_assignment("conv2d", kit)
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    kit_references = load_references(in_kit, cache_dir=empty)
    assert set(kit_references) == {"img_tensor", "average_output", "random_kernel", "random_bias"}
    assert not any(empty.iterdir())  # read from the kit, nothing built or cached
    with KernelExecutor() as executor:
        for notebook in sorted((ROOT / "assignments/conv2d/examples").glob("*.ipynb")):
            instructor = grade(
                notebook, full.for_students(), executor=executor, references=references, references_key=key
            )
            student = grade(notebook, in_kit, executor=executor, references=kit_references)
            assert [(t.name, t.score) for t in student.tests] == [(t.name, t.score) for t in instructor.tests], notebook
            assert student.max_score == 7.0
    outside = tmp_path / "mine"
    outside.mkdir()
    shutil.copy(FIXTURES / "swapped_strides.ipynb", outside)
    done = run_check(outside / "swapped_strides.ipynb", kit, empty)
    assert done.returncode == 1, done.stderr
    assert "3 more points (2 checks) are not checked here" in done.stdout
    assert HIDDEN not in done.stdout


LAST_CELL = """
import json, time
start = time.perf_counter()
report = grader.check(display=False)
page = report.html()
shown_s = time.perf_counter() - start
print(json.dumps({"seconds": report.seconds, "shown_s": shown_s, "html": page, "text": report.text()}))
grader.check("average_output")
"""


def run_live(notebook: Path, kit: Path, cache: Path) -> tuple[dict, dict, list]:
    """Run the student's notebook in a real Jupyter kernel in the kit's folder,
    calling ``grader.check(answer)`` right after each answer cell, as the kit's
    README says, then ``grader.check()`` at the end."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    first = (
        "import time\nstart = time.perf_counter()\nimport grader\ngrader.use()\nfirst_s = time.perf_counter() - start"
    )
    cells = [nbformat.v4.new_code_cell("checked = {}\n" + first)]
    for cell in nb.cells:
        cells.append(cell)
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("answer:"):
                name = tag.removeprefix("answer:")
                source = f"checked.update({{t.name: t.score for t in grader.check({name!r}, display=False).tests}})"
                cells.append(nbformat.v4.new_code_cell(source))
    cells.append(nbformat.v4.new_code_cell("import json\nprint(json.dumps({'checked': checked, 'first_s': first_s}))"))
    cells.append(nbformat.v4.new_code_cell(LAST_CELL))
    nb.cells = cells
    env = {k: v for k, v in os.environ.items() if k != "GRADER_ROOT"} | {"GRADER_CACHE_DIR": str(cache)}
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(kit)}})
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)

    def printed(cell):
        return json.loads(next(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"))

    displayed = [o for o in nb.cells[-1].outputs if o.output_type == "display_data"]
    return printed(nb.cells[-2]), printed(nb.cells[-1]), displayed


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["correct", "swapped_strides", "lesson_literal_random_kernel"])
def test_checking_inside_the_notebook_gives_the_kits_verdicts(course, tmp_path, fixture):
    from grader.execution.kernel import KernelExecutor
    from grader.grading.grade import grade

    _, kit = course
    notebook = tmp_path / f"{fixture}.ipynb"
    shutil.copy(FIXTURES / f"{fixture}.ipynb", notebook)
    during, last, displayed = run_live(notebook, kit, tmp_path)
    graded = grade(notebook, load_assignment("conv2d", kit), executor=KernelExecutor())
    assert during["checked"] == {t.name: t.score for t in graded.tests}
    print(
        f"import grader + grader.use(): {during['first_s']:.3f} s; grader.check() of every visible check: "
        f"{last['seconds']:.3f} s, {last['shown_s']:.3f} s with the HTML and its pictures"
    )
    assert "Feedback only" in last["text"] and "3 points (2 checks) are not checked here" in last["text"]
    assert 'class="grader-feedback"' in last["html"] and "data:image/png;base64," in last["html"]
    (shown,) = displayed  # grader.check("average_output") showed itself: HTML for Jupyter, text for the rest
    assert {"text/html", "text/plain"} <= set(shown.data)
    assert "average_output" in shown.data["text/html"] and "random_output" not in shown.data["text/plain"]


def test_a_value_a_later_cell_changed_says_when_to_check_it(spec_with_hidden):
    from grader.kit.live import moment_notes

    notes = moment_notes(spec_with_hidden.for_students())
    assert list(notes) == ["random_output"]
    assert notes["random_output"][0].startswith(
        "random_kernel is model.get_weights()[0] as your notebook holds it now, while grading takes it right after "
        "the cell tagged answer:random_output"
    )


def test_a_kit_zip_or_url_is_unpacked_once_and_a_hostile_one_refused(course, tmp_path, monkeypatch):
    """`grader.use(zip)` and `grader.use(URL)` (from a loopback server) read the
    kit release zipped; a zip with an entry outside it, or a link, is refused."""
    import threading
    import zipfile
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from grader.errors import GraderError
    from grader.kit import live

    _, kit = course
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    assert live.use(Path(str(kit) + ".zip")).spec.withheld.points == 3.0
    unpacked = list((tmp_path / "cache" / "kits").iterdir())
    live.use(Path(str(kit) + ".zip"))
    assert list((tmp_path / "cache" / "kits").iterdir()) == unpacked  # once
    for name, entry in (("slip", "../evil.txt"), ("link", "kit/link")):
        bad = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            info = zipfile.ZipInfo(entry)
            if name == "link":
                info.create_system, info.external_attr = 3, 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
        with pytest.raises(GraderError, match="outside the kit" if name == "slip" else "is a link"):
            live.use(bad)
    assert not (tmp_path / "cache" / "evil.txt").exists()
    for key in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    handler = partial(SimpleHTTPRequestHandler, directory=str(kit.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{kit.name}.zip"
        assert live.use(url).name == "conv2d"
        assert len(list((tmp_path / "cache" / "kits").glob("*.zip"))) == 1
    finally:
        server.shutdown()
        server.server_close()
