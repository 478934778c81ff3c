"""The result JSON Schema is committed (schema/result.schema.json) for
platforms to validate against; it must be exactly what `grader schema`
prints, and every fixture's result must validate against it."""

import json

import jsonschema
import pytest
from conftest import FIXTURES, ROOT

from grader.model.result import Result

COMMITTED = ROOT / "schema" / "result.schema.json"


def test_committed_schema_is_the_generated_one():
    assert json.loads(COMMITTED.read_text()) == Result.model_json_schema(), (
        "regenerate it: grader schema > schema/result.schema.json"
    )


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.ipynb")))
def test_every_fixture_result_validates(graded, name):
    kwargs = {"cell_timeout": 10} if name == "infinite_loop_in_extra_cell" else {}
    result = json.loads(graded(name, **kwargs).model_dump_json())
    jsonschema.validate(result, json.loads(COMMITTED.read_text()))
