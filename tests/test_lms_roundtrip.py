"""From the LMS's submissions zip to grades in the LMS, with the commands an
instructor types: `grader import`, `grader batch`, `grader lti roster --join`
and `grader publish lti --tool`, against the loopback platform with Canvas's
and Moodle's rules (tests/lti_platform.py).  Every student's grade arrives,
as the batch scored it, none late, none on another student."""

import json
import zipfile
from datetime import UTC, datetime

import pytest
from conftest import ROOT
from lti_platform import Platform

from grader.cli import main
from grader.platforms.lti.keys import generate_key

EXAMPLES = ROOT / "assignments/conv2d/examples"
# (given, family, LTI user id, example notebook)
CLASS = [
    ("Alice", "Liddell", "5e1f-alice", "alice_correct"),
    ("Bob", "Builder", "6a2b-bob", "bob_swapped_strides"),
    ("Carol", "Lesson", "7c3d-carol", "carol_followed_the_lesson"),
]


def canvas_zip(path):
    """Canvas's "Download Submissions": <lastnamefirstname>[_LATE]_<user id>_<attachment id>_<file>."""
    with zipfile.ZipFile(path, "w") as zf:
        for number, (given, family, _, example) in enumerate(CLASS):
            late = "_LATE" if given == "Bob" else ""
            name = f"{(family + given).lower()}{late}_{101 + number}_{9001 + number}_conv2d.ipynb"
            zf.write(EXAMPLES / f"{example}.ipynb", name)
    return path


def moodle_zip(path):
    """Moodle's "Download all submissions": <Full Name>_<participant>_assignsubmission_file_/<file>."""
    with zipfile.ZipFile(path, "w") as zf:
        for number, (given, family, _, example) in enumerate(CLASS):
            zf.write(
                EXAMPLES / f"{example}.ipynb", f"{given} {family}_{17 + number}_assignsubmission_file_/conv2d.ipynb"
            )
    return path


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind, download", [("canvas", canvas_zip), ("moodle", moodle_zip)])
def test_from_the_download_to_the_gradebook(tmp_path, kind, download, capsys):
    public = generate_key(tmp_path / "lti-key.pem")
    with Platform(kind=kind, jwks=public, due_at=datetime(2026, 11, 20, tzinfo=UTC)) as lms:
        for given, family, user, _ in CLASS:
            lms.member(user, given, family, email=f"{given.lower()}@example.org")
        tool = lms.tool_config(tmp_path, tmp_path / "lti-key.pem")
        subs, results, roster = tmp_path / "subs", tmp_path / "results", tmp_path / "roster.csv"

        assert main(["import", kind, str(download(tmp_path / f"{kind}.zip")), "--out", str(subs)]) == 0
        assert main(["batch", str(subs), "--assignment", "conv2d", "--out", str(results)]) == 0
        assert (
            main(["lti", "roster", "--tool", str(tool), "--join", str(subs / "roster.csv"), "--out", str(roster)]) == 0
        )
        capsys.readouterr()
        assert main(["publish", "lti", str(results), "--roster", str(roster), "--tool", str(tool)]) == 0
        assert "3 of 3 scores accepted" in capsys.readouterr().out

        scored = {}
        for path in results.glob("*.json"):
            if path.name not in ("summary.json",):
                result = json.loads(path.read_text())
                scored[result["submission"]["file"]] = result["score"]
        (item,) = lms.state.lineitems.values()  # created by the publish, with the assignment's points
        assert (item["resourceId"], item["scoreMaximum"]) == ("conv2d", 10.0)
        held = {user: grade for (_, user), grade in lms.state.grades.items()}
        joined = {line.split(",")[1]: line.split(",")[0] for line in roster.read_text().splitlines()[1:]}
        assert sorted(held) == sorted(u for _, _, u, _ in CLASS)
        for user, grade in held.items():
            assert grade.score == scored[joined[user]], user  # each student's own score
            assert (grade.attempts, grade.late) == (0, False)  # no attempt stamped now, so nobody is late
        assert sorted(scored.values()) != [10.0, 10.0, 10.0]  # the class is not all correct: a mix-up would show
