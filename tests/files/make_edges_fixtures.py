"""Regenerate tests/files/edges/ (fixtures named for what they show) from the
`edges` exercise as this script writes it; with --notebooks, also rewrite the
template and solution themselves (only if you edit the exercise here rather
than in Jupyter).

    .venv/bin/python tests/files/make_edges_fixtures.py [--notebooks]
"""

import copy
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "assignments/edges/edges.ipynb"
SOLUTION = ROOT / "solutions/edges/edges.ipynb"
FIXTURES = ROOT / "tests/files/edges"

INTRO = """\
# Pooling, strides and edge detection with Keras

In this exercise you will shrink a photo with a **max-pooling** layer and then find its **edges** with a
hand-written **Sobel** kernel in a `Conv2D` layer that moves in steps of two pixels (**strides**).
Along the way you will predict the shape of every output before you compute it: that arithmetic is
what you need whenever you stack layers in a convolutional network.

**How you are graded.** Each exercise stores its result in a variable with a fixed name
(`img_tensor`, `pooled_output`, `edges_output`). Write your code in the cell right below each
exercise: the grader reads each variable right after that cell runs, checks its **shape**, and
compares its **values** with the reference solution. Keep the cells in order, do not rename the
variables, and run the whole notebook top to bottom (*Kernel > Restart & Run All*) before you
submit. You can check your work with `grader check <this notebook>`."""

SETUP = """\
# Setup: run this cell first and do not edit it.
import numpy as np
import tensorflow as tf
from tensorflow.keras.models import Sequential
from tensorflow.keras.layers import Conv2D, MaxPooling2D

# 512x512 grayscale photo (SciPy's public-domain "ascent"), float32 values 0..255
img = np.load("ascent.npy").astype("float32")
print(img.shape, img.dtype, img.min(), img.max())"""

EX1 = """\
## Exercise 1: from image to tensor (2 points)

Keras layers work on **batches** of images with a **channel** axis: a tensor of shape
`(batch, height, width, channels)` ("channels last"). Our image is a single 512x512 grayscale
picture, so its tensor has shape `(1, 512, 512, 1)`.

Reshape `img` into that tensor and call it `img_tensor`. Keep the pixel values as they are (0..255):
do not scale them.

*Careful:* `(1, 1, 512, 512)` is the *channels-first* layout, which Keras does not use by default."""

EX1_CODE = """\
img_tensor = img.reshape((1, 512, 512, 1))
print(img_tensor.shape)"""

EX2 = """\
## Exercise 2: max pooling (3 points)

A **pooling** layer has no weights. `MaxPooling2D(pool_size=(2, 2))` slides a 2x2 window over the
image and keeps, at each position, the **largest** of the 4 pixels under it. Its **strides** (how
far the window moves at each step) default to the pool size, `(2, 2)`, so the windows do not
overlap: every 2x2 block of pixels becomes one output pixel. With the default `padding='valid'` the
window only goes where it fits entirely inside the image.

The output size along each axis is

$$\\text{out} = \\left\\lfloor \\frac{\\text{in} - \\text{pool}}{\\text{stride}} \\right\\rfloor + 1
= \\left\\lfloor \\frac{512 - 2}{2} \\right\\rfloor + 1 = 256,$$

so the pooled image has half the height, half the width (a quarter of the pixels) and keeps the
brightest detail of each block: `(1, 256, 256, 1)`.

Build a `Sequential` model with **one** layer, `MaxPooling2D(pool_size=(2, 2), input_shape=(512, 512, 1))`,
and store `model.predict(img_tensor)` in `pooled_output`. There are no weights, so nothing to
compile or train.

*Careful:* if you pass `strides=(1, 1)` the windows overlap and the image hardly shrinks:
`(512 - 2) // 1 + 1 = 511`."""

EX2_CODE = """\
pool_model = Sequential()
pool_model.add(MaxPooling2D(pool_size=(2, 2), input_shape=(512, 512, 1)))
pooled_output = pool_model.predict(img_tensor, verbose=0)
print(pooled_output.shape)"""

EX3 = """\
## Exercise 3: Sobel edge detection with a strided convolution (5 points)

An **edge** is a place where the brightness changes quickly. The **horizontal Sobel kernel**

$$S_x = \\begin{pmatrix} -1 & 0 & 1 \\\\ -2 & 0 & 2 \\\\ -1 & 0 & 1 \\end{pmatrix}$$

subtracts the column of pixels on the left of each position from the column on the right (the
middle row counts double, which smooths out noise a little). On a flat region the result is 0;
where the image gets brighter from left to right it is large and positive, where it gets darker it
is large and negative. $S_x$ measures the *horizontal* change of brightness, so it lights up
**vertical edges**. Its transpose, $S_y$ (rows and columns swapped), measures the vertical change and
finds horizontal edges instead.

A `Conv2D` layer in Keras computes a **cross-correlation**: it multiplies the kernel, *exactly as you
write it*, with the pixels under it and adds up the products. Unlike the textbook convolution it does
**not** flip the kernel, so write $S_x$ as it is shown above.

1. **Write the kernel yourself** as a NumPy array and reshape it to Keras' kernel layout
   `(height, width, input channels, filters)`, here `(3, 3, 1, 1)`. Call it `sobel`.
   (The file `sobel_x.npy` in your folder holds the same kernel: once you have written yours,
   `np.array_equal(sobel, np.load("sobel_x.npy"))` should print `True`.)
2. Build a **second** `Sequential` model with one layer:
   `Conv2D(1, (3, 3), strides=(2, 2), padding='valid', use_bias=False, input_shape=(256, 256, 1))`.
   With `use_bias=False` the layer has a kernel and no bias, so `model.get_weights()` is `[kernel]`.
3. Replace its random kernel with yours: `model.set_weights([sobel])`.
4. Apply it to the **pooled** image (not to `img_tensor`) and store `model.predict(pooled_output)` in
   `edges_output`.

Work out the shape first. With `padding='valid'` a 3x3 window fits `256 - 3 + 1 = 254` times along
each axis; with a stride of 2 the layer only keeps every other position:
`(256 - 3) // 2 + 1 = 127`. So `edges_output` should have shape `(1, 127, 127, 1)`.

| what the model does | output shape |
| --- | --- |
| `strides=(2, 2)`, `padding='valid'`, on `pooled_output` (this exercise) | `(1, 127, 127, 1)` |
| default strides `(1, 1)`: `256 - 3 + 1` | `(1, 254, 254, 1)` |
| `padding='same'` with `strides=(2, 2)`: zero-padded, `ceil(256 / 2)` | `(1, 128, 128, 1)` |
| applied to `img_tensor` instead: `(512 - 3) // 2 + 1` | `(1, 255, 255, 1)` |

The values lie between `-4 * 255` and `4 * 255`: strongly negative or positive at vertical edges,
near 0 elsewhere."""

EX3_CODE = """\
sobel = np.array([[-1, 0, 1],
                  [-2, 0, 2],
                  [-1, 0, 1]], dtype="float32").reshape((3, 3, 1, 1))
edge_model = Sequential()
edge_model.add(Conv2D(1, (3, 3), strides=(2, 2), padding='valid', use_bias=False, input_shape=(256, 256, 1)))
edge_model.set_weights([sobel])
edges_output = edge_model.predict(pooled_output, verbose=0)
print(edges_output.shape)"""

OUTRO = """\
## Before you submit

Run *Kernel > Restart & Run All* and check that every cell ran without errors. You may add cells of
your own: plots are a good idea. After `import matplotlib.pyplot as plt`, compare `plt.imshow(img, cmap='gray')`,
`plt.imshow(pooled_output[0, :, :, 0], cmap='gray')` and `plt.imshow(edges_output[0, :, :, 0], cmap='gray')`:
which edges of the staircase does $S_x$ find, and which does it miss? Keep the exercise cells and
their variable names."""

EXERCISES = [
    (EX1, "img_tensor", EX1_CODE, "# Exercise 1: your code here (store the tensor in img_tensor)\n"),
    (EX2, "pooled_output", EX2_CODE, "# Exercise 2: your code here (store the prediction in pooled_output)\n"),
    (
        EX3,
        "edges_output",
        EX3_CODE,
        "# Exercise 3: your code here (write the kernel `sobel` yourself, then store the prediction in edges_output)\n",
    ),
]


def build(solution: bool):
    cells = [
        new_markdown_cell(INTRO, id="edges-intro"),
        new_code_cell(SETUP, id="edges-setup", metadata={"deletable": False, "editable": False, "tags": ["setup"]}),
    ]
    for i, (text, name, code, stub) in enumerate(EXERCISES, start=1):
        cells.append(new_markdown_cell(text, id=f"edges-ex{i}"))
        cells.append(
            new_code_cell(code if solution else stub, id=f"edges-ex{i}-answer", metadata={"tags": [f"answer:{name}"]})
        )
    cells.append(new_markdown_cell(OUTRO, id="edges-submit"))
    return new_notebook(
        cells=cells,
        metadata={
            "grader": {"assignment": "edges"},
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )


def index_of(nb, tag):
    return next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))


def edit(nb, tag, old, new):
    cell = nb.cells[index_of(nb, tag)]
    assert cell.source.count(old) == 1, (tag, old)
    cell.source = cell.source.replace(old, new)
    return nb


SOBEL = "[[-1, 0, 1],\n                  [-2, 0, 2],\n                  [-1, 0, 1]]"
FIXTURE_BUILDERS = {
    "correct": lambda nb: nb,
    # forgot strides=(2, 2): the window visits every position
    "no_strides": lambda nb: edit(nb, "answer:edges_output", "strides=(2, 2), padding='valid'", "padding='valid'"),
    "same_padding": lambda nb: edit(nb, "answer:edges_output", "padding='valid'", "padding='same'"),
    "sobel_on_original_image": lambda nb: edit(
        nb, "answer:edges_output", "edge_model.predict(pooled_output", "edge_model.predict(img_tensor"
    ),
    # rows written as columns: the vertical Sobel kernel S_y
    "transposed_kernel": lambda nb: edit(
        nb,
        "answer:edges_output",
        SOBEL,
        "[[-1, -2, -1],\n                  [ 0,  0,  0],\n                  [ 1,  2,  1]]",
    ),
    # the textbook convolution's flipped kernel, which Keras' cross-correlation does not need
    "negated_kernel": lambda nb: edit(
        nb, "answer:edges_output", SOBEL, "[[1, 0, -1],\n                  [2, 0, -2],\n                  [1, 0, -1]]"
    ),
}


def main():
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    SOLUTION.parent.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    template, solution = build(False), build(True)
    for nb in (template, solution):
        nbformat.validate(nb)
    if "--notebooks" in sys.argv:
        nbformat.write(template, TEMPLATE)
        nbformat.write(solution, SOLUTION)
    for name, builder in FIXTURE_BUILDERS.items():
        nb = builder(copy.deepcopy(solution))
        nbformat.validate(nb)
        nbformat.write(nb, FIXTURES / f"{name}.ipynb")
    nbformat.write(copy.deepcopy(template), FIXTURES / "empty_template.ipynb")


if __name__ == "__main__":
    main()
