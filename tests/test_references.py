"""Reference answers: built once from the solution, cached by content,
verified on load, cross-checked against NumPy."""

import numpy as np
import pytest

from grader.errors import SolutionError
from grader.execution.kernel import KernelExecutor
from grader.grading.references import load_references, reference_key
from grader.model.assignment import load_assignment
from grader.settings import cache_root


class CountingExecutor:
    name = "counting"

    def __init__(self):
        self.runs = 0
        self.inner = KernelExecutor()

    def run(self, plan, workdir):
        self.runs += 1
        return self.inner.run(plan, workdir)


def test_cached_references_are_reused_without_running_the_solution(assignment, references):
    executor = CountingExecutor()
    again = load_references(assignment, executor=executor)
    assert executor.runs == 0
    assert again.keys() == references.keys()
    assert again["same_output"].shape == (1, 512, 512, 1)


def test_reference_values_are_the_box_blur(references):
    img = references["img_tensor"][0, :, :, 0].astype(np.float64)
    # pixel (1, 1) of the 'same' output is the sum of img[0:3, 0:3]
    assert references["same_output"][0, 1, 1, 0] == pytest.approx(img[0:3, 0:3].sum(), rel=1e-6)
    assert references["average_output"][0, 1, 0, 0] == pytest.approx(img[2:5, 0:3].sum(), rel=1e-6)


def test_corrupt_cache_entry_is_rebuilt_not_trusted(assignment, references):
    folder = cache_root() / assignment.name / reference_key(assignment)[:32]
    target = folder / "same_output.npy"
    data = bytearray(target.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # last pixel becomes +inf
    target.write_bytes(bytes(data))
    executor = CountingExecutor()
    rebuilt = load_references(assignment, executor=executor)
    assert executor.runs == 1
    np.testing.assert_array_equal(rebuilt["same_output"], references["same_output"])


def test_key_depends_on_the_solution_content(assignment_copy):
    a = load_assignment(assignment_copy / "assignments/conv2d")
    before = reference_key(a)
    a.solution_path.write_text(a.solution_path.read_text().replace("print(img_tensor.shape)", "print('changed')"))
    assert reference_key(a) != before


def test_solution_that_raises_is_refused(assignment_copy):
    a = load_assignment(assignment_copy / "assignments/conv2d")
    a.solution_path.write_text(
        a.solution_path.read_text().replace(
            "average_output = model.predict(img_tensor", "average_output = model.predict(img_tensr"
        )
    )
    with pytest.raises(SolutionError, match="did not run cleanly"):
        load_references(a)


def test_missing_solution_is_refused(assignment_copy):
    a = load_assignment(assignment_copy / "assignments/conv2d")
    a.solution_path.unlink()
    with pytest.raises(SolutionError, match="reference solution not found"):
        load_references(a)


def test_key_covers_files_named_only_in_computations(assignment_copy):
    folder = assignment_copy / "assignments/edges"
    spec = folder / "assignment.toml"
    spec.write_text(spec.read_text().replace(', "data/sobel_x.npy"', ""))  # grader-only now
    a = load_assignment(folder)
    assert [p.name for p in a.data_files] == ["ascent.npy"]
    assert [p.name for p in a.computation_files] == ["ascent.npy", "sobel_x.npy"]
    before = reference_key(a)
    np.save(folder / "data/sobel_x.npy", -np.load(folder / "data/sobel_x.npy"))
    assert reference_key(a) != before


def test_missing_computation_file_is_a_spec_error(assignment_copy):
    from grader.errors import SpecError

    (assignment_copy / "assignments/edges/data/sobel_x.npy").unlink()
    with pytest.raises(SpecError, match="file named in the spec is missing: .*sobel_x.npy"):
        load_assignment(assignment_copy / "assignments/edges")
