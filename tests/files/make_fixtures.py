"""Regenerate the fixture notebooks (tests/files/conv2d/) and the bundled
example submissions (assignments/conv2d/examples/) from the reference solution
and the template.  Each fixture is a realistic student notebook named for what
it shows; the tests assert its score and feedback.

    .venv/bin/python tests/files/make_fixtures.py             # all of them
    .venv/bin/python tests/files/make_fixtures.py NAME...     # only these fixtures
"""

import copy
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions/conv2d/conv2d.ipynb"
TEMPLATE = ROOT / "assignments/conv2d/conv2d.ipynb"
FIXTURES = ROOT / "tests/files/conv2d"
EXAMPLES = ROOT / "assignments/conv2d/examples"


def load(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def index_of(nb, tag):
    return next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))


def edit(nb, tag, old, new):
    cell = nb.cells[index_of(nb, tag)]
    assert old in cell.source, (tag, old)
    cell.source = cell.source.replace(old, new)
    return nb


def insert_after(nb, tag, source, markdown=False):
    cell = new_markdown_cell(source) if markdown else new_code_cell(source)
    nb.cells.insert(index_of(nb, tag) + 1, cell)
    return nb


def variant(builder):
    return builder(copy.deepcopy(load(SOLUTION)))


def swapped_strides(nb):
    return edit(nb, "answer:random_output", "strides=(2, 1)", "strides=(1, 2)")


def no_same_padding(nb):
    return edit(nb, "answer:same_output", ", padding='same'", "")


def normalized_kernel(nb):
    return edit(nb, "answer:average_output", "np.ones(weights[0].shape)", "np.ones(weights[0].shape) / 9")


def lesson_literal(nb):
    # The lesson's last model keeps its random kernel: no set_weights.
    return edit(nb, "answer:same_output", "model.set_weights(weights)\n", "")


def error_in_unrelated_cell(nb):
    insert_after(nb, "answer:random_output", "# how many pixels changed?\nratio = changed_pixels / img.size")
    return nb


def tf_tensor_outputs(nb):
    edit(
        nb,
        "answer:img_tensor",
        "img_tensor = img.reshape((1, 512, 512, 1))",
        "img_tensor = tf.reshape(img, (1, 512, 512, 1))",
    )
    edit(
        nb,
        "answer:random_output",
        "random_output = model.predict(img_tensor, verbose=0)",
        "random_output = model(img_tensor)",
    )
    edit(
        nb,
        "answer:average_output",
        "average_output = model.predict(img_tensor, verbose=0)",
        "average_output = model(img_tensor)",
    )
    edit(
        nb,
        "answer:same_output",
        "same_output = model.predict(img_tensor, verbose=0)",
        "same_output = model(img_tensor)",
    )
    return nb


def deleted_tags(nb):
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    return nb


def answer_cell_turned_markdown(nb):
    i = index_of(nb, "answer:same_output")
    old = nb.cells[i]
    nb.cells[i] = new_markdown_cell(old.source, metadata=old.metadata)
    return nb


def cells_inserted_deleted_reordered(nb):
    # delete the introduction and the closing advice, add notes and a plot,
    # move the exercise texts after their code
    nb.cells = [
        c for c in nb.cells if not (c.cell_type == "markdown" and c.source.startswith(("# Filtering", "## Before")))
    ]
    insert_after(nb, "setup", "import matplotlib.pyplot as plt\nplt.imshow(img, cmap='gray')\nplt.title('original')")
    insert_after(
        nb, "answer:average_output", "plt.imshow(average_output[0, :, :, 0], cmap='gray')\nplt.title('blurred')"
    )
    insert_after(
        nb, "answer:average_output", "My notes: the blur sums 9 pixels, so values go up to 9 * 255.", markdown=True
    )
    markdown = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Exercise")]
    for i in markdown:  # swap each exercise text with the code cell after it
        nb.cells[i], nb.cells[i + 1] = nb.cells[i + 1], nb.cells[i]
    return nb


def name_reused_later(nb):
    # like the lesson, the student reuses names after each exercise; what was
    # computed in the answer cell is what counts
    insert_after(nb, "answer:average_output", "average_output = None  # free memory\nrandom_output = average_output")
    return nb


def magics_and_plots(nb):
    insert_after(
        nb,
        "setup",
        "%matplotlib inline\nimport matplotlib.pyplot as plt\n!echo checking the image\nplt.imshow(img, cmap='gray')\nplt.show()",
    )
    edit(nb, "answer:average_output", "average_output = model.predict", "%time average_output = model.predict")
    insert_after(
        nb,
        "answer:same_output",
        "fig, axes = plt.subplots(1, 2)\naxes[0].imshow(img, cmap='gray')\naxes[1].imshow(same_output[0, :, :, 0], cmap='gray')\nplt.show()",
    )
    return nb


EXERCISE_4 = (
    "model = Sequential()\n"
    "model.add(Conv2D(1, (3, 3), input_shape=(512, 512, 1), padding='same'))\n"
    "model.set_weights(weights)\n"
    "same_output = model.predict(img_tensor, verbose=0)\n"
)


def untagged_with_block_reused(nb):
    # tags deleted, exercise 4 computed inside a with block and its name reused
    # afterwards: what the with block computed counts, not the 'done' after it
    edit(nb, "answer:same_output", EXERCISE_4, "with tf.device('/CPU:0'):\n" + textwrap.indent(EXERCISE_4, "    "))
    insert_after(nb, "answer:same_output", "same_output = 'done'\nprint('exercise 4:', same_output)")
    return deleted_tags(nb)


def untagged_tuple_unpacking(nb):
    # tags deleted, answers bound by unpacking
    edit(
        nb,
        "answer:random_output",
        "random_output = model.predict(img_tensor, verbose=0)",
        "random_output, first_kernel = model.predict(img_tensor, verbose=0), model.get_weights()[0]",
    )
    edit(
        nb,
        "answer:same_output",
        "same_output = model.predict(img_tensor, verbose=0)\nprint(same_output.shape)",
        "prediction = model.predict(img_tensor, verbose=0)\nblurred, same_output = prediction[0, :, :, 0], prediction\n"
        "print(blurred.shape, same_output.shape)",
    )
    return deleted_tags(nb)


def untagged_magics(nb):
    # tags deleted, answers assigned under %%capture, %time and %%time, and
    # average_output freed after its plot: read as IPython runs the cells
    insert_after(nb, "setup", "%matplotlib inline\nimport matplotlib.pyplot as plt\n!ls")
    cell = nb.cells[index_of(nb, "answer:random_output")]
    cell.source = "%%capture\n" + cell.source  # hides Keras' warning about input_shape
    edit(nb, "answer:average_output", "average_output = model.predict", "%time average_output = model.predict")
    insert_after(
        nb,
        "answer:average_output",
        "plt.imshow(average_output[0, :, :, 0], cmap='gray')\nplt.show()\naverage_output = None  # free memory",
    )
    cell = nb.cells[index_of(nb, "answer:same_output")]
    cell.source = "%%time\n" + cell.source
    return deleted_tags(nb)


def untagged_syntax_error(nb):
    # tags deleted, and the exercise 4 cell does not parse: no cell is known to
    # assign same_output, so the end of the notebook is used, and says so
    edit(nb, "answer:same_output", "padding='same'))", "padding='same')")
    return deleted_tags(nb)


def channels_first(nb):
    return edit(nb, "answer:img_tensor", "img.reshape((1, 512, 512, 1))", "img.reshape((1, 1, 512, 512))")


def infinite_loop_in_extra_cell(nb):
    insert_after(nb, "answer:random_output", "# waiting for the model to converge...\nwhile True:\n    pass")
    return nb


def kernel_dies_midway(nb):
    insert_after(nb, "answer:random_output", "import os\nos._exit(1)")
    return nb


def pixels_scaled(nb):
    edit(nb, "answer:img_tensor", "img.reshape((1, 512, 512, 1))", "img.reshape((1, 512, 512, 1)) / 255")
    return nb


def scipy_box_blur(nb):
    # SciPy is an allowed package of this assignment (requirements.txt): the box blur computed without Keras
    return edit(
        nb,
        "answer:average_output",
        "average_output = model.predict(img_tensor, verbose=0)",
        "from scipy.signal import correlate2d\n\n"
        "# a 3x3 box sum, every second row: what the all-ones kernel with strides (2, 1) computes\n"
        'average_output = correlate2d(img, np.ones((3, 3)), mode="valid")[::2].reshape((1, 255, 510, 1))',
    )


FIXTURE_BUILDERS = {
    "scipy_box_blur": scipy_box_blur,
    "correct": lambda nb: nb,
    "swapped_strides": swapped_strides,
    "no_same_padding": no_same_padding,
    "normalized_kernel": normalized_kernel,
    "lesson_literal_random_kernel": lesson_literal,
    "error_in_unrelated_cell": error_in_unrelated_cell,
    "tf_tensor_outputs": tf_tensor_outputs,
    "deleted_tags": deleted_tags,
    "answer_cell_turned_markdown": answer_cell_turned_markdown,
    "cells_inserted_deleted_reordered": cells_inserted_deleted_reordered,
    "name_reused_later": name_reused_later,
    "magics_and_plots": magics_and_plots,
    "channels_first_reshape": channels_first,
    "pixels_scaled": pixels_scaled,
    "infinite_loop_in_extra_cell": infinite_loop_in_extra_cell,
    "kernel_dies_midway": kernel_dies_midway,
    "untagged_with_block_reused": untagged_with_block_reused,
    "untagged_tuple_unpacking": untagged_tuple_unpacking,
    "untagged_magics": untagged_magics,
    "untagged_syntax_error": untagged_syntax_error,
}


def unfinished(nb):
    """Exercises 1-2 done, 3 started with a typo, 4 untouched."""
    solution = load(SOLUTION)
    for tag in ("answer:img_tensor", "answer:random_output"):
        nb.cells[index_of(nb, tag)].source = solution.cells[index_of(solution, tag)].source
    nb.cells[index_of(nb, "answer:average_output")].source = (
        "weights = model.get_weights()\nweights[0] = np.ones(weight[0].shape)\nmodel.set_weights(weights)\n"
        "average_output = model.predict(img_tensor)"
    )
    return nb


EXAMPLE_BUILDERS = {
    "alice_correct": lambda nb: nb,
    "bob_swapped_strides": swapped_strides,
    "carol_followed_the_lesson": lesson_literal,
    "dan_divided_by_nine": normalized_kernel,
}


def main(names):
    FIXTURES.mkdir(parents=True, exist_ok=True)
    if names:  # only these fixtures: the others keep their cell ids
        unknown = sorted(set(names) - set(FIXTURE_BUILDERS))
        if unknown:
            sys.exit(f"no fixture builder for {', '.join(unknown)}; known: {', '.join(FIXTURE_BUILDERS)}")
        for name in names:
            nbformat.write(variant(FIXTURE_BUILDERS[name]), FIXTURES / f"{name}.ipynb")
        return
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    for name, builder in FIXTURE_BUILDERS.items():
        nbformat.write(variant(builder), FIXTURES / f"{name}.ipynb")
    nbformat.write(load(TEMPLATE), FIXTURES / "empty_template.ipynb")
    text = (FIXTURES / "correct.ipynb").read_text()
    (FIXTURES / "truncated_json.ipynb").write_text(text[: len(text) // 2])
    (FIXTURES / "not_a_notebook.ipynb").write_bytes(
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    )
    for name, builder in EXAMPLE_BUILDERS.items():
        nbformat.write(variant(builder), EXAMPLES / f"{name}.ipynb")
    nbformat.write(unfinished(load(TEMPLATE)), EXAMPLES / "erin_unfinished.ipynb")


if __name__ == "__main__":
    main(sys.argv[1:])
