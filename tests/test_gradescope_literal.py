"""The Gradescope bundle where Gradescope runs it: the literal /autograder
(a tmpfs mounted in a private mount namespace, as root), `setup.sh` run for
real (it picks this machine's Python and installs the pinned requirements
from the package index into /autograder/venv), then `run_autograder` for a
correct, a wrong and a snooping notebook under a student's file name with a
submission_metadata.json: once with every privilege, once with
CAP_SYS_ADMIN dropped as in a default Docker container."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES

from grader.platforms.gradescope import build_bundle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a mount namespace, a tmpfs on /autograder)"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("unshare", "capsh", "unzip")), reason="needs unshare, capsh and unzip"
    ),
    pytest.mark.skipif(
        os.path.exists("/autograder") and any(os.scandir("/autograder")),
        reason="/autograder holds files on this machine: not touching it",
    ),
]

METADATA = {
    "id": 987654,
    "created_at": "2026-12-01T23:59:01.000000-08:00",
    "assignment": {"id": 31337, "title": "Conv2D", "due_date": "2026-12-02T23:00:00.000000-08:00"},
    "submission_method": "upload",
    "users": [{"email": "ada@example.edu", "id": 4242, "name": "Ada Student"}],
    "previous_submissions": [],
}
STUDENT_FILE = "Ada Student - conv2d (1).ipynb"
# A correct notebook that looks for the bundle: full marks only if it finds nothing to read.
SNOOP = """
import os
found = []
for path in ["/autograder/source/references", "/autograder/source/gradescope.json",
             "/autograder/source/assignments/conv2d/assignment.toml", "/autograder/source/self-check/known-good.ipynb",
             "/autograder/source"]:
    try:
        if os.path.isdir(path):
            found.append((path, os.listdir(path)))
        else:
            found.append((path, open(path, "rb").read(10)))
    except OSError:
        pass
print("readable:", found)
if found:
    same_output = None  # a leak costs this notebook its last answer: the test sees it in the score
"""


def snooping_notebook(dest: Path) -> Path:
    """The correct notebook, its last answer cell looking for the bundle too
    (answers are captured right after their cell, so the leak shows there)."""
    nb = json.loads((FIXTURES / "correct.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "answer:same_output" in c.get("metadata", {}).get("tags", [])]
    cell["source"] = "".join(cell["source"]) + "\n" + SNOOP
    dest.write_text(json.dumps(nb))
    return dest


SCRIPT = r"""
set -eu
OUT="$1"; BUNDLE="$2"; NOTEBOOKS="$3"
mkdir -p /autograder
mount -t tmpfs -o mode=0755,size=12g gs /autograder
mkdir -p /autograder/source /autograder/submission
unzip -q "$BUNDLE" -d /autograder/source
bash /autograder/source/setup.sh > "$OUT/setup.log" 2>&1 || { echo "setup.sh failed: $?" >> "$OUT/setup.log"; exit 3; }
stat -c '%a %U' /autograder/source > "$OUT/source-mode"
cp /autograder/source/run_autograder /autograder/
cp "$OUT/metadata.json" /autograder/submission_metadata.json
grade() {  # privileges, notebook
    rm -rf /autograder/submission/* /autograder/results
    cp "$NOTEBOOKS/$2.ipynb" "/autograder/submission/Ada Student - conv2d (1).ipynb"
    status=0
    if [ "$1" = docker ]; then
        (cd /autograder && capsh --drop=cap_sys_admin -- -c ./run_autograder) > "$OUT/$1-$2.stdout" 2>&1 || status=$?
    else
        (cd /autograder && ./run_autograder) > "$OUT/$1-$2.stdout" 2>&1 || status=$?
    fi
    echo "$status" > "$OUT/$1-$2.status"
    cp /autograder/results/results.json "$OUT/$1-$2.json" 2>/dev/null || true
}
for privileges in full docker; do
    for notebook in correct swapped_strides snoop; do grade "$privileges" "$notebook"; done
done
# a bundle its students' uid could read (setup.sh's chmod undone): refused, not graded
chmod 0755 /autograder/source
grade docker readable-bundle
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, assignment, references):
    tmp = tmp_path_factory.mktemp("literal")
    bundle = build_bundle(assignment, tmp / "autograder.zip")
    notebooks = tmp / "notebooks"
    notebooks.mkdir()
    shutil.copy(FIXTURES / "correct.ipynb", notebooks / "correct.ipynb")
    shutil.copy(FIXTURES / "correct.ipynb", notebooks / "readable-bundle.ipynb")
    shutil.copy(FIXTURES / "swapped_strides.ipynb", notebooks / "swapped_strides.ipynb")
    snooping_notebook(notebooks / "snoop.ipynb")
    out = tmp / "out"
    out.mkdir()
    (out / "metadata.json").write_text(json.dumps(METADATA))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if ".venv" not in p)  # setup.sh finds its own
    created = not os.path.exists("/autograder")  # the mount point outlives the namespace: removed below
    try:
        proc = subprocess.run(
            ["unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private", "bash", "-c", SCRIPT, "script"]
            + [str(out), str(bundle), str(notebooks)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
    finally:
        if created and os.path.isdir("/autograder") and not any(os.scandir("/autograder")):
            os.rmdir("/autograder")
    setup_log = (out / "setup.log").read_text() if (out / "setup.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + setup_log[-4000:]
    return out


def results(runs: Path, name: str) -> dict:
    assert (runs / f"{name}.status").read_text().strip() == "0", (runs / f"{name}.stdout").read_text()[-3000:]
    return json.loads((runs / f"{name}.json").read_text())


def test_setup_installs_a_final_python_and_passes_its_self_check(runs):
    log = (runs / "setup.log").read_text()
    assert "setup.sh: using /usr/bin/python3.11 (3.11." in log or "setup.sh: installing python3.11" in log
    assert "rc" not in log.split("setup.sh: using ")[-1].split(")")[0]
    assert "known-good notebook known-good.ipynb: 10 / 10" in log and "bundle ok" in log
    assert (runs / "source-mode").read_text().split() == ["700", "root"]


@pytest.mark.parametrize("privileges", ["full", "docker"])
def test_correct_notebook_gets_full_marks_and_wrong_one_less(runs, privileges):
    correct = results(runs, f"{privileges}-correct")
    wrong = results(runs, f"{privileges}-swapped_strides")
    assert correct["score"] == 10, correct["output"]
    assert wrong["score"] == 5, wrong["output"]
    assert correct["extra_data"]["submitters"] == METADATA["users"]
    assert correct["extra_data"]["result"]["submission"]["file"] == STUDENT_FILE
    isolation = correct["extra_data"]["result"]["isolation"]
    if privileges == "full":
        assert isolation.startswith("full:")
    else:
        assert isolation.startswith("partial:") and "unprivileged uid" in isolation, isolation
        assert "readable by the student" not in isolation


@pytest.mark.parametrize("privileges", ["full", "docker"])
def test_students_code_cannot_read_the_bundle(runs, privileges):
    snoop = results(runs, f"{privileges}-snoop")
    assert snoop["score"] == 10, [t["output"] for t in snoop["tests"] if t["status"] != "passed"]


def test_a_bundle_students_could_read_is_refused_not_graded(runs):
    """Without a mount namespace, only permissions keep the bundle from the
    student: where they do not, the autograder fails (no score recorded)."""
    assert (runs / "docker-readable-bundle.status").read_text().strip() != "0"
    assert not (runs / "docker-readable-bundle.json").exists()
    stdout = (runs / "docker-readable-bundle.stdout").read_text()
    assert "the students' uid could read /autograder/source" in stdout and "Gradescope records no score" in stdout
