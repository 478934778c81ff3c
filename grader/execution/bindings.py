"""Where an untagged answer was computed: the last notebook cell that binds a
name, read from each cell's syntax tree as IPython runs it (magics and ``!``
lines become calls first).

Every binding of the notebook's global counts, wherever it is nested (if, for,
while, try, with, match): plain, annotated, augmented and unpacking
assignments, ``for`` and ``with ... as`` targets, ``:=``, match captures,
``import ... as`` and ``def``/``class`` of that name (they bind it as well).
Inside a function or class body an assignment binds a local, so it counts only
under ``global <name>``; comprehension variables are local too, but ``:=`` in a
comprehension binds the enclosing scope; ``except ... as`` unbinds its name
when the handler ends, so it never counts.  The code of ``%time``, ``%%time`` and
``%%capture`` runs in the notebook's namespace, so it is read as well.

A binding that cannot be an answer, a ``None``/string/bytes/``...`` literal or
``del``, is the name being reused (``same_output = 'done'``, ``x = None  # free
memory``): a cell whose last binding is one is skipped when an earlier cell
computes the name.  A placeholder is still graded as written when nothing else
assigns the name.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SOURCE = 1 << 20  # characters: IPython takes seconds per MiB, and planning runs under no timeout
LINE_MAGICS = {"time"}  # magics that run their argument in the notebook's namespace (%timeit runs it in a function)
CELL_MAGICS = {"time", "capture"}
PLACEHOLDERS = (type(None), str, bytes, type(Ellipsis))
SHOWN = 30  # characters of a placeholder shown in the notice
DELETES = "deletes it"


@dataclass(frozen=True)
class AnswerCell:
    """Where to capture an untagged answer. ``index`` is None when no cell binds
    the name, or when ``unparsed`` (a cell that mentions it and could not be
    read) leaves the last binding unknown: then the end of the notebook is used."""

    index: int | None = None
    skipped: tuple[int, str] | None = None  # a later cell that only reuses the name: (index, "sets it to 'done'")
    unparsed: tuple[int, str] | None = None  # (index, "SyntaxError: '(' was never closed, line 2")


class Unreadable(Exception):
    """A cell whose bindings cannot be known; the message says why."""


def answer_cell(sources: Sequence[str | None], name: str) -> AnswerCell:
    """The cell after which ``name`` holds what the student computed, from the
    notebook's cell sources (None for a cell that does not run)."""
    value: int | None = None
    placeholder: int | None = None
    skipped: tuple[int, str] | None = None
    unparsed: tuple[int, str] | None = None
    word = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
    for index, source in enumerate(sources):
        # a cell that never mentions the name cannot bind it (identifiers are NFKC-normalized)
        if source is None or not word.search(unicodedata.normalize("NFKC", source)):
            continue
        try:
            effects = cell_bindings(source, name)
        except Unreadable as exc:
            unparsed = (index, str(exc))
            continue
        if not effects:
            continue
        if effects[-1] is None:
            value, skipped = index, None
        else:
            skipped = (index, effects[-1])
            if effects[-1] != DELETES:
                placeholder = index
    if value is None:
        # an unreadable cell could compute it, and would be chosen over a placeholder
        return AnswerCell(unparsed=unparsed) if unparsed else AnswerCell(placeholder)
    if unparsed and unparsed[0] > value:
        return AnswerCell(unparsed=unparsed)
    return AnswerCell(value, skipped)


def cell_bindings(source: str, name: str) -> list[str | None]:
    """What the cell does to the global ``name``, in order: None for a binding
    of a value, else what a binding that cannot be an answer does (``"sets it
    to None"``, :data:`DELETES`).  Raises :class:`Unreadable`."""
    if len(source) > MAX_SOURCE:
        raise Unreadable(f"it has {len(source):,} characters, more than the {MAX_SOURCE:,} read")
    finder = _Finder(name)
    try:
        finder.run(source, 0)
    except RecursionError:
        raise Unreadable("it is nested too deeply to be read") from None
    return finder.effects


def _parse(source: str, line_offset: int) -> ast.Module:
    """``source`` as IPython runs it; ``line_offset`` turns the line numbers
    of what IPython made of it into the cell's."""
    # imported here: IPython is only needed once a tag is missing, and costs an import of 60 ms
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError as exc:
        where = f", line {exc.lineno + line_offset}" if exc.lineno else ""
        raise Unreadable(f"{type(exc).__name__}: {exc.msg}{where}") from None
    except RecursionError:
        raise
    except Exception as exc:  # IPython's transformer fails on some malformed input (IndexError)
        raise Unreadable(f"IPython could not read it: {type(exc).__name__}") from None


def _placeholder(value: ast.expr) -> str | None:
    """'sets it to <literal>' for a value that cannot be an answer."""
    if isinstance(value, ast.JoinedStr) or (isinstance(value, ast.Constant) and isinstance(value.value, PLACEHOLDERS)):
        text = ast.unparse(value)
        return f"sets it to {text if len(text) <= SHOWN else text[: SHOWN - 3] + '...'}"
    return None


def _declares_global(body: list[ast.stmt], name: str) -> bool:
    """Whether a function or class body declares ``global name`` (nested scopes aside)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global) and name in node.names:
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return False


class _Finder(ast.NodeVisitor):
    """Collects, in execution order, the bindings of the global ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.effects: list[str | None] = []
        self.binds = True  # in the notebook's own scope, where an assignment binds the global
        self.line_offset = 0

    def run(self, source: str, line_offset: int) -> None:
        lines = source.splitlines()
        blank = next((i for i, line in enumerate(lines) if line and not line.isspace()), 0)  # IPython drops them
        outer, self.line_offset = self.line_offset, line_offset + blank
        self.visit(_parse(source, self.line_offset))
        self.line_offset = outer

    def _bind(self, name: str | None, effect: str | None = None) -> None:
        if name == self.name and self.binds:
            self.effects.append(effect)

    def _scope(self, body: list[ast.stmt]) -> None:
        outer, self.binds = self.binds, _declares_global(body, self.name)
        for statement in body:
            self.visit(statement)
        self.binds = outer

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        elif isinstance(node.ctx, ast.Del):
            self._bind(node.id, DELETES)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)  # evaluated before the targets are bound
        effect = _placeholder(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._bind(target.id, effect)
            else:
                self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            return  # `name: int` only annotates
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._bind(node.target.id, _placeholder(node.value))
        else:
            self.visit(node.target)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name)  # `import *` binds names no one can see here

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.generic_visit(node)
        self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        self._bind(node.rest)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, node.args, *([node.returns] if node.returns else [])]:
            self.visit(expr)  # evaluated where the function is defined
        self._bind(node.name)
        self._scope(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(expr)
        self._bind(node.name)
        self._scope(node.body)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)  # its body is its own scope, where even := binds a local

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        for generator in node.generators:  # its targets are local to the comprehension
            self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
        for part in [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]:
            self.visit(part)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "get_ipython"
        ):
            return
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        offset = self.line_offset + node.lineno - 1
        if func.attr == "run_line_magic" and len(args) == 2 and args[0] in LINE_MAGICS:
            self.run(args[1], offset)
        elif func.attr == "run_cell_magic" and len(args) == 3 and args[0] in CELL_MAGICS:
            self.run(args[2], offset + 1)  # the body starts on the line after %%magic
