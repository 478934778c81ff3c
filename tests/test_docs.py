"""The README cannot silently rot: its Quickstart is what CI runs, and every
command and exit code of the CLI is documented."""

import re

import pytest
from conftest import ROOT

from grader.cli import build_parser

README = (ROOT / "README.md").read_text()


def quickstart_commands():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_second():
    setup_and_grade, setup_and_test = quickstart_commands()
    assert "grader batch assignments/conv2d/examples" in setup_and_grade
    assert "pytest" in setup_and_test
    assert setup_and_test in (ROOT / ".ci" / "run").read_text()


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_command_is_documented_and_has_help(name):
    assert f"`grader {name}" in README
    assert subcommands()[name].description


def test_every_exit_code_is_documented():
    import grader.cli

    codes = set(re.findall(r"(\d) [a-z`]", grader.cli.__doc__.split("Exit codes:", 1)[1]))
    for code in codes | {"0", "1", "2", "3", "4", "5"}:
        assert re.search(rf"^\| {code} \|", README, re.M), f"exit code {code} missing from README"


def test_bundled_examples_exist():
    examples = sorted(p.name for p in (ROOT / "assignments/conv2d/examples").glob("*.ipynb"))
    assert len(examples) >= 4
