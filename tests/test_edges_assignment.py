"""The second exercise, `edges` (max pooling, then a strided Conv2D with a
hand-written Sobel kernel), added as data only: a folder of template, solution,
data files and spec, with no change to the grader.  Its fixtures
(tests/files/edges/, named for what they show) are graded end to end with a
fresh kernel: the score, which checks fail, and the feedback that matters."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here builds or uses the edges references

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = ROOT / "assignments" / "edges"
FIXTURES = ROOT / "tests" / "files" / "edges"

ALL_CHECKS = [
    "Exercise 1: img_tensor has shape (1, 512, 512, 1)",
    "Exercise 1: img_tensor holds the image's pixels",
    "Exercise 2: pooled_output has shape (1, 256, 256, 1)",
    "Exercise 2: pooled_output is the 2x2 max pooling of the image",
    "Exercise 3: edges_output has shape (1, 127, 127, 1)",
    "Exercise 3: edges_output is the horizontal Sobel filter of the pooled image",
]
EX1, EX1V, EX2, EX2V, EX3, EX3V = ALL_CHECKS

# fixture, score, failed checks, text that must appear in the failed checks' feedback
CASES = [
    ("correct", 10, [], []),
    ("no_strides", 5, [EX3, EX3V], ["The strides are missing", "found (1, 254, 254, 1)"]),
    ("same_padding", 5, [EX3, EX3V], ["This model uses padding='same'", "found (1, 128, 128, 1)"]),
    (
        "sobel_on_original_image",
        5,
        [EX3, EX3V],
        ["The Sobel model was applied to img_tensor", "found (1, 255, 255, 1)"],
    ),
    (
        "transposed_kernel",
        7,
        [EX3V],
        ["but with a kernel other than S_x", "your kernel is transposed", "The kernel that fits your output"],
    ),
    ("negated_kernel", 7, [EX3V], ["exactly the negatives of the expected ones", "cross-correlation"]),
    ("empty_template", 0, ALL_CHECKS, ["was never assigned"]),
]


@pytest.fixture(scope="module")
def project_root():
    """Assignment names are looked up under $GRADER_ROOT: this project."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADER_ROOT", str(ROOT))
        yield ROOT


@pytest.fixture(scope="module")
def edges(project_root):
    from grader.model.assignment import load_assignment

    return load_assignment(ASSIGNMENT)


@pytest.fixture(scope="module")
def edges_references(edges):
    """Built once for this module (cached in the session's GRADER_CACHE_DIR),
    cross-checked against the spec's NumPy computations."""
    from grader.grading.references import load_references

    return load_references(edges)


@pytest.fixture(scope="module")
def graded(edges, edges_references):
    from grader.execution.kernel import KernelExecutor
    from grader.grading.grade import grade

    cache = {}

    def run(name: str):
        if name not in cache:
            cache[name] = grade(
                FIXTURES / f"{name}.ipynb", edges, executor=KernelExecutor(), references=edges_references
            )
        return cache[name]

    return run


def test_spec_is_plain_data_on_the_shared_image(edges):
    import numpy as np

    assert edges.name == "edges"
    assert edges.spec.max_score == 10
    assert edges.solution_path == ROOT / "solutions" / "edges" / "edges.ipynb"
    assert (ASSIGNMENT / "data" / "ascent.npy").read_bytes() == (
        ROOT / "assignments/conv2d/data/ascent.npy"
    ).read_bytes()
    sobel = np.load(ASSIGNMENT / "data" / "sobel_x.npy", allow_pickle=False)
    assert sobel.shape == (3, 3, 1, 1)
    assert sobel[:, :, 0, 0].tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def test_template_is_tagged_for_the_grader(edges):
    import nbformat

    nb = nbformat.read(edges.template_path, as_version=4)
    assert nb.metadata["grader"] == {"assignment": "edges"}
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata["tags"] == ["setup"]
    assert [c.metadata["tags"] for c in code[1:]] == [
        ["answer:img_tensor"],
        ["answer:pooled_output"],
        ["answer:edges_output"],
    ]
    assert all(line.startswith("#") for c in code[1:] for line in c.source.splitlines())  # empty answer cells


def test_references_agree_with_numpy(edges_references):
    # load_references cross-checks the solution against the spec's compute
    # tables; here, the shapes it produced
    assert {k: v.shape for k, v in edges_references.items()} == {
        "img_tensor": (1, 512, 512, 1),
        "pooled_output": (1, 256, 256, 1),
        "edges_output": (1, 127, 127, 1),
    }


def test_validate_passes(project_root, edges_references, capsys):
    from grader.cli import main

    assert main(["validate", "edges"]) == 0
    out = capsys.readouterr().out
    assert "10/10 ok" in out and "0/10 ok" in out


@pytest.mark.parametrize("name, score, failed, feedback", CASES, ids=[c[0] for c in CASES])
def test_fixture_score_and_feedback(graded, name, score, failed, feedback):
    result = graded(name)
    assert result.status == "graded"
    assert result.assignment.name == "edges"
    assert result.score == score, result.output
    assert [t.name for t in result.tests if t.status == "failed"] == failed
    text = "\n".join(t.output for t in result.tests if t.status == "failed")
    for expected in feedback:
        assert expected in text, text
    for test in result.tests:
        assert test.score == (test.max_score if test.status == "passed" else 0)
    assert result.max_score == 10


def test_transposed_kernel_feedback_shows_the_vertical_sobel_kernel(graded):
    test = graded("transposed_kernel").tests[5]
    fitted = test.diagnosis.split("The kernel that fits your output:")[1]
    numbers = [float(x) for x in fitted.replace("[", " ").replace("]", " ").split(",")[0].split()]
    assert numbers == [-1, -2, -1, 0, 0, 0, 1, 2, 1]


def test_batch_gives_a_result_per_notebook(project_root, edges_references, tmp_path):
    from grader.cli import main
    from grader.model.result import Result

    out = tmp_path / "results"
    assert main(["batch", str(FIXTURES), "--assignment", "edges", "--out", str(out)]) == 0
    names = sorted(p.stem for p in FIXTURES.glob("*.ipynb"))
    assert names == sorted(c[0] for c in CASES)
    scores = {n: Result.model_validate_json((out / f"{n}.json").read_text()).score for n in names}
    assert scores == {c[0]: c[1] for c in CASES}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["submissions"] == len(CASES)
    assert (out / "gradebook.csv").is_file()
