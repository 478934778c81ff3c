"""Untagged answers, found as the student meant them (grader.execution.bindings):
which cell binds a name, read from its syntax tree as IPython runs it; which
binding is the answer when the name is reused; what happens when a cell does
not parse.  No TensorFlow: the notebooks here are planned, never run."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.execution.bindings import DELETES, MAX_SOURCE, AnswerCell, Unreadable, answer_cell, cell_bindings
from grader.execution.plan import plan_execution, read_submission
from grader.model.assignment import load_assignment

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "files" / "conv2d"


@pytest.fixture(scope="module")
def spec():
    return load_assignment(ROOT / "assignments" / "conv2d").spec


# --- what one cell does to the name ---------------------------------------------------

VALUE = [None]  # the cell binds x to a value

# source -> what the cell does to the global x, in order
BINDINGS = [
    ("x = f()", VALUE),
    ("x: np.ndarray = f()", VALUE),
    ("x += 1", VALUE),
    ("a = x = f()", VALUE),
    ("a, x = f()", VALUE),
    ("[a, (b, x)] = f()", VALUE),
    ("*rest, x = f()", VALUE),
    ("for x in xs:\n    pass", VALUE),
    ("async def g():\n    global x\n    async for x in xs:\n        pass", VALUE),
    ("with tf.device('/CPU:0'):\n    x = f()", VALUE),
    ("with open('f') as x:\n    pass", VALUE),
    ("with a() as (b, x):\n    pass", VALUE),
    ("if (x := f()) is not None:\n    pass", VALUE),
    ("[(x := i) for i in range(3)]", VALUE),  # := in a comprehension binds the enclosing scope
    ("if ok:\n    x = f()\nelse:\n    x = g()", [None, None]),
    ("while True:\n    x = f()\n    break", VALUE),
    ("try:\n    x = f()\nexcept ValueError:\n    pass\nfinally:\n    pass", VALUE),
    ("match p:\n    case [1, x]:\n        pass", VALUE),
    ("match p:\n    case {'k': 1, **x}:\n        pass", VALUE),
    ("match p:\n    case [*x]:\n        pass", VALUE),
    ("import numpy as x", VALUE),  # an import binds the name
    ("from answers import x", VALUE),
    ("import x.y", VALUE),
    ("def x():\n    pass", VALUE),
    ("def g():\n    global x\n    x = f()", VALUE),
    ("def g():\n    if ok:\n        global x\n    x = f()", VALUE),
    ("class A:\n    global x\n    x = 1", VALUE),
    ("    x = f()", VALUE),  # IPython removes the cell's leading indentation
    ("x = 'done'", ["sets it to 'done'"]),
    ("x = None  # free memory", ["sets it to None"]),
    ("x: str = 'done'", ["sets it to 'done'"]),
    ("x = f'done {n}'", ["sets it to f'done {n}'"]),
    ("x = b'raw'", ["sets it to b'raw'"]),
    ("x = ...", ["sets it to ..."]),
    ("x = '" + "a" * 100 + "'", ["sets it to '" + "a" * 26 + "..."]),
    ("a = x = None", ["sets it to None"]),
    ("del x", [DELETES]),
    ("del a, x", [DELETES]),
    ("x = f()\nx = 'done'", [None, "sets it to 'done'"]),
    ("x = 0", VALUE),  # a number can be an answer
    ("x = []", VALUE),
    ("x = (None, 'done')", VALUE),
    # not a binding of the notebook's x
    ("print(x)", []),
    ("x == 1", []),
    ("x.shape = (1, 2)", []),
    ("x[0] = 1", []),
    ("x2 = 1", []),
    ("x: int", []),  # only annotates
    ("def g():\n    x = f()", []),
    ("def g(x=1):\n    return x", []),
    ("def g():\n    def h():\n        global x\n    x = 1", []),  # the global is h's, not g's
    ("async def g():\n    x = await f()", []),
    ("class A:\n    x = 1", []),
    ("g = lambda: (x := 1)", []),
    ("[x for x in range(3)]", []),
    ("{x: 1 for x in range(3)}", []),
    ("try:\n    pass\nexcept E as x:\n    pass", []),  # unbound when the handler ends
    ("global x", []),
    ("from numpy import *", []),
]


@pytest.mark.parametrize("source, effects", BINDINGS, ids=[b[0] for b in BINDINGS])
def test_what_a_cell_does_to_the_name(source, effects):
    assert cell_bindings(source, "x") == effects


# magics and shell lines, as IPython runs them
MAGICS = [
    ("%time x = f()", VALUE),
    ("a = 1\n%time x = f()", VALUE),
    ("x = %time f()", VALUE),
    ("%%time\nx = f()", VALUE),
    ("%%capture\nx = f()\nprint(x)", VALUE),
    ("%%capture\n%time x = f()", VALUE),
    ("\n%%capture\nx = 'done'", ["sets it to 'done'"]),
    ("%matplotlib inline\n!ls\nx = f()", VALUE),
    ("x = !ls", VALUE),
    ("x?", []),
    ("%timeit x = f()", []),  # %timeit runs its code in a function
    ("%%timeit\nx = f()", []),
    ("%%bash\nx=1", []),
    ("%%writefile x.py\nx = 1", []),
]


@pytest.mark.parametrize("source, effects", MAGICS, ids=[m[0] for m in MAGICS])
def test_magics_are_read_as_ipython_runs_them(source, effects):
    assert cell_bindings(source, "x") == effects


# source -> the start of the reason; the line is the cell's, magics and leading blank lines included
UNREADABLE = [
    ("x = f(\n", "SyntaxError: '(' was never closed, line 1"),
    ("a = 1\nx = f(a\nprint(x)", "SyntaxError: '(' was never closed, line 2"),
    ("\n\n  \nx = f(", "SyntaxError: '(' was never closed, line 4"),
    ("%matplotlib inline\n%time x = f(", "SyntaxError: '(' was never closed, line 2"),
    ("\n%%capture\na = 1\nx = f(", "SyntaxError: '(' was never closed, line 4"),
    ("if ok:\nx = 1", "IndentationError: expected an indented block after 'if' statement on line 1, line 2"),
    ("x = '\0'", "SyntaxError: source code string cannot contain null bytes"),
    ("x = " + "+".join(["1"] * 5000), "it is nested too deeply to be read"),
    ("x = 1\n" * (MAX_SOURCE // 6 + 1), "it has 1,048,578 characters, more than the 1,048,576 read"),
]


@pytest.mark.parametrize("source, reason", UNREADABLE, ids=[u[1][:40] for u in UNREADABLE])
def test_a_cell_that_cannot_be_read_says_why(source, reason):
    with pytest.raises(Unreadable) as info:
        cell_bindings(source, "x")
    assert str(info.value) == reason


# --- which cell is the answer's -------------------------------------------------------

# cell sources (None: a markdown cell) -> where x is captured
CELLS = [
    (["x = 1", "print(x)"], AnswerCell(0)),
    (["x = 1", None, "x = 2"], AnswerCell(2)),
    (["x = 1", "x = 'done'"], AnswerCell(0, skipped=(1, "sets it to 'done'"))),
    (["x = 1", "x = None", "print(x)"], AnswerCell(0, skipped=(1, "sets it to None"))),
    (["x = 1", "del x"], AnswerCell(0, skipped=(1, DELETES))),
    (["x = 1", "x = None", "del x"], AnswerCell(0, skipped=(2, DELETES))),
    (["x = None  # your answer", "x = f()"], AnswerCell(1)),  # the template's placeholder, then the work
    (["x = 1", "x = 'done'", "x = 2"], AnswerCell(2)),
    (["x = f()\nx = 'done'", "print(x)"], AnswerCell(0)),  # the cell leaves only a placeholder: graded as written
    (["x = 'TODO'"], AnswerCell(0)),  # only a placeholder: graded as written
    (["x = 'TODO'", "x = None"], AnswerCell(1)),
    (["del x"], AnswerCell()),
    (["print('x')"], AnswerCell()),
    (["y = 1"], AnswerCell()),
    ([], AnswerCell()),
    (["x = 1", "print(x"], AnswerCell(unparsed=(1, "SyntaxError: '(' was never closed, line 1"))),
    (["print(x", "x = 1"], AnswerCell(1)),  # a later binding wins whatever the broken cell did
    (["x = 1", "y = (", "x = 'done'"], AnswerCell(0, skipped=(2, "sets it to 'done'"))),  # y = ( never mentions x
    (["x = 'TODO'", "x = f("], AnswerCell(unparsed=(1, "SyntaxError: '(' was never closed, line 1"))),
    (["x = f(", "x = 'TODO'"], AnswerCell(unparsed=(0, "SyntaxError: '(' was never closed, line 1"))),
    (["ｘ = 1"], AnswerCell(0)),  # identifiers are NFKC-normalized: the fullwidth x is x
]


@pytest.mark.parametrize("sources, expected", CELLS, ids=[" | ".join(map(str, c[0])) for c in CELLS])
def test_the_answer_cell(sources, expected):
    assert answer_cell(sources, "x") == expected


# --- the plan and what the student is told --------------------------------------------


def plan_of(tmp_path, spec, cells):
    path = tmp_path / "sub.ipynb"
    nbformat.write(new_notebook(cells=cells), str(path))
    return plan_execution(read_submission(path, 2**24), spec, [])


def captures(plan):
    return {s.cell_index: set(s.captures) for s in plan.steps if s.captures}


def test_a_name_reused_later_is_captured_where_it_was_computed(tmp_path, spec):
    plan = plan_of(
        tmp_path,
        spec,
        [
            new_code_cell("with tf.device('/CPU:0'):\n    same_output = model.predict(img_tensor)"),
            new_markdown_cell("Done!"),
            new_code_cell("same_output = 'done'"),
        ],
    )
    assert captures(plan) == {0: {"same_output"}}
    assert plan.notices["same_output"] == [
        "no cell is tagged 'answer:same_output'; its value was taken after cell 1, the last cell that computes "
        "same_output (cell 3 only sets it to 'done')"
    ]


def test_a_cell_that_does_not_parse_sends_the_answer_to_the_end(tmp_path, spec):
    plan = plan_of(
        tmp_path,
        spec,
        [
            new_code_cell("model = make()\nrandom_output = model.predict(img_tensor)"),
            new_code_cell("same_output = model.predict(img_tensor)"),
            new_code_cell("import matplotlib.pyplot as plt\nplt.imshow(same_output[0, :, :, 0]"),
        ],
    )
    assert captures(plan) == {0: {"random_output", "random_kernel", "random_bias"}}  # not cell 2's same_output
    assert "same_output" in plan.final_captures
    assert plan.notices["same_output"] == [
        "no code cell is tagged 'answer:same_output', and cell 3, which mentions same_output, could not be parsed "
        "(SyntaxError: '(' was never closed, line 2), so its value was taken at the end of the notebook: fix that "
        "cell, or tag the cell that computes same_output 'answer:same_output'"
    ]


def test_an_expression_answer_after_a_cell_that_does_not_parse_is_not_captured(tmp_path, spec):
    plan = plan_of(tmp_path, spec, [new_code_cell("model = make()\nrandom_output = model.predict(img_tensor")])
    assert captures(plan) == {}
    notice = plan.notices["random_kernel"][0]
    assert "cell 1, which mentions random_output, could not be parsed" in notice
    assert "so it could not be captured" in notice


# the fixtures graded in test_grading_fixtures.py, planned here without TensorFlow
FIXTURE_PLANS = [
    ("untagged_with_block_reused", {"same_output": ("after cell 10", "cell 11 only sets it to 'done'")}),
    ("untagged_tuple_unpacking", {"random_output": ("after cell 6", ""), "same_output": ("after cell 10", "")}),
    (
        "untagged_magics",
        {
            "random_output": ("after cell 7", ""),  # %%capture
            "average_output": ("after cell 9", "cell 10 only sets it to None"),  # %time, then freed
            "same_output": ("after cell 12", ""),  # %%time
        },
    ),
    ("untagged_syntax_error", {"same_output": ("at the end of the notebook", "cell 10, which mentions same_output")}),
]


@pytest.mark.parametrize("name, expected", FIXTURE_PLANS, ids=[f[0] for f in FIXTURE_PLANS])
def test_fixture_plans(spec, name, expected):
    plan = plan_execution(read_submission(FIXTURES / f"{name}.ipynb", 2**24), spec, [])
    where = {n: f"after cell {s.cell_index + 1}" for s in plan.steps for n in s.captures}
    for answer, (captured, notice) in expected.items():
        assert where.get(answer, "at the end of the notebook") == captured
        assert notice in plan.notices[answer][0]
