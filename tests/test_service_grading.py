"""`grader serve` grading for real, one service shared by the module (warm
executor, two workers, anonymous on loopback): the fixture corpus gets the
scores `grader batch` gives it, the feedback page has its pictures, `grader
check/batch --server` use the service, a warm parent that dies is replaced,
and a student uploads through the page in headless Chromium."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from cdp import Browser, Tab, find_browser
from conftest import FIXTURES, ROOT
from serving import get, post_notebook, request, start_server, wait_result
from test_grading_fixtures import CASES

pytestmark = pytest.mark.slow
UNREADABLE = {"truncated_json": "looks truncated", "not_a_notebook": "is not UTF-8 text"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, references):  # references: built once for the session, the service reads the cache
    server = start_server(tmp_path_factory.mktemp("service") / "data", "--workers", "2")
    yield server
    server.stop()


def test_the_fixture_corpus_gets_the_batch_scores(server):
    names = [c[0] for c in CASES] + list(UNREADABLE)
    with ThreadPoolExecutor(8) as pool:
        posted = list(pool.map(lambda n: post_notebook(server, "conv2d", FIXTURES / f"{n}.ipynb"), names))
    assert all(status == 202 for status, _ in posted)
    results = dict(zip(names, [wait_result(server, body["id"]) for _, body in posted]))
    for name, score, failed, feedback in CASES:
        result = results[name]
        assert (result["status"], result["score"], result["executor"]) == ("graded", score, "warm"), name
        assert [t["name"] for t in result["tests"] if t["status"] == "failed"] == failed, name
        assert result["isolation"].startswith("full"), result["isolation"]
        text = "\n".join(t["output"] for t in result["tests"] if t["status"] == "failed")
        assert all(f in text for f in feedback), name
        assert result["submission"]["file"] == f"{name}.ipynb"
    for name, reason in UNREADABLE.items():
        assert results[name]["status"] == "invalid_submission" and reason in results[name]["errors"][0]
    metrics = request(server, "GET", "metrics")[2].decode()
    graded = sum(
        float(m.group(1))
        for m in re.finditer(r'grader_graded_total\{assignment="conv2d",status="\w+"\} ([\d.]+)', metrics)
    )
    assert graded >= len(names)
    assert float(re.search(r"grader_grading_seconds_count ([\d.]+)", metrics).group(1)) >= len(names)


def test_the_feedback_page_has_its_pictures(server):
    sid = post_notebook(server, "conv2d", FIXTURES / "correct.ipynb")[1]["id"]
    assert wait_result(server, sid)["score"] == 10
    status, headers, page = request(server, "GET", f"submissions/{sid}/feedback")
    assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
    page = page.decode()
    assert "10 / 10 points" in page and page.count('src="data:image/png;base64,') == 12
    status, _, answers = request(server, "GET", f"submissions/{sid}/answers.npz")
    assert status == 200 and answers[:4] == b"PK\x03\x04"


def test_pictures_go_after_their_days_and_the_grade_stays(tmp_path, references):
    """GRADER_SERVE__KEEP_ANSWERS_DAYS (here about 4 s): past it, the kept
    answers and the page's pictures are removed; the result, the notebook and
    a page saying why the pictures are gone remain."""
    days = 5e-5
    server = start_server(tmp_path / "data", "--workers", "1", env={"GRADER_SERVE__KEEP_ANSWERS_DAYS": str(days)})
    try:
        sid = post_notebook(server, "conv2d", FIXTURES / "correct.ipynb")[1]["id"]
        graded = wait_result(server, sid)
        deadline = time.monotonic() + days * 86400 + 30
        while request(server, "GET", f"submissions/{sid}/answers.npz")[0] == 200:
            assert time.monotonic() < deadline, "the answers were never removed"
            time.sleep(0.5)
        status, _, page = request(server, "GET", f"submissions/{sid}/feedback")
        page = page.decode()
        assert status == 200 and "10 / 10 points" in page and "data:image/png" not in page
        assert "pictures of this submission were removed" in page
        assert get(server, f"submissions/{sid}") == (200, graded)
        assert [p.name for p in (server.data / "submissions" / sid).iterdir()] == ["correct.ipynb"]
        metrics = request(server, "GET", "metrics")[2].decode()
        assert float(re.search(r"grader_pictures_removed_total ([\d.]+)", metrics).group(1)) >= 1
    finally:
        server.stop()


def test_check_and_batch_use_the_running_service(server, tmp_path):
    notebook = tmp_path / "mine.ipynb"
    notebook.write_bytes((FIXTURES / "swapped_strides.ipynb").read_bytes())
    check = subprocess.run(
        [sys.executable, "-m", "grader", "check", str(notebook), "--server", server.url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert check.returncode == 1, check.stderr  # below full marks
    assert "The strides are swapped" in check.stdout
    assert (tmp_path / "mine.feedback.html").read_text().count("data:image/png;base64,") == 10

    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    for name in ("correct", "no_same_padding", "truncated_json"):
        (subs / f"{name} copy.ipynb").write_bytes((FIXTURES / f"{name}.ipynb").read_bytes())
    command = [sys.executable, "-m", "grader", "batch", str(subs), "-a", "conv2d", "--out", str(out)]
    first = subprocess.run(
        [*command, "--server", server.url, "--keep-answers"], capture_output=True, text=True, cwd=ROOT
    )
    assert first.returncode == 0, first.stderr
    scores = {p.stem: json.loads(p.read_text())["score"] for p in out.glob("*.json") if p.name != "summary.json"}
    assert scores == {"correct copy": 10, "no_same_padding copy": 7, "truncated_json copy": 0}
    assert json.loads((out / "correct copy.json").read_text())["submission"]["file"] == "correct copy.ipynb"
    assert json.loads((out / "summary.json").read_text())["submissions"] == 3
    assert (out / "answers" / "correct copy.npz").is_file()
    again = subprocess.run(
        [*command, "--server", server.url, "--keep-answers"], capture_output=True, text=True, cwd=ROOT
    )
    assert again.returncode == 0 and "(3 already up to date)" in again.stdout, again.stdout


def warm_parent(server):
    children = psutil.Process(server.proc.pid).children()
    return next(p for p in children if "grader.execution.zygote" in " ".join(p.cmdline()))


def restarts(server):
    metrics = request(server, "GET", "metrics")[2].decode()
    return float(re.search(r"^grader_pool_restarts_total ([\d.]+)$", metrics, re.M).group(1))


def test_a_dead_warm_parent_is_replaced_and_counted(server):
    before, parent = restarts(server), warm_parent(server)
    os.kill(parent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while restarts(server) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert restarts(server) == before + 1
    assert warm_parent(server).pid != parent.pid
    sid = post_notebook(server, "conv2d", FIXTURES / "no_same_padding.ipynb")[1]["id"]
    assert wait_result(server, sid)["score"] == 7


def regrades(server):
    metrics = request(server, "GET", "metrics")[2].decode()
    return float(re.search(r"^grader_regrades_total ([\d.]+)$", metrics, re.M).group(1))


def test_a_submission_graded_while_the_warm_parent_died_is_graded_again(server, tmp_path):
    notebook = json.loads((FIXTURES / "correct.ipynb").read_text())
    notebook["cells"].append(
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": "import time\ntime.sleep(3)",
        }
    )
    slow = tmp_path / "slow.ipynb"
    slow.write_text(json.dumps(notebook))
    before = regrades(server)
    sid = post_notebook(server, "conv2d", slow)[1]["id"]
    deadline = time.monotonic() + 60
    while get(server, f"submissions/{sid}")[1]["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # in the notebook's sleep
    os.kill(warm_parent(server).pid, signal.SIGKILL)
    result = wait_result(server, sid)
    assert result["score"] == 10 and result["errors"] == [] and result["status"] == "graded"
    assert regrades(server) == before + 1


@pytest.fixture(scope="module")
def chromium():
    binary = find_browser()
    if binary is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium); the page test needs it")
    return binary


def test_a_student_uploads_through_the_page_and_reads_the_feedback(server, chromium, tmp_path):
    upload = tmp_path / "lesson literal.ipynb"
    upload.write_bytes((FIXTURES / "lesson_literal_random_kernel.ipynb").read_bytes())
    browser = Browser(chromium, tmp_path / "profile")
    try:
        tab = Tab(browser)
        tab.call("Page.navigate", {"url": server.url})
        tab.wait_for("document.querySelector('#assignment').dataset.loaded === 'true'")
        assert tab.evaluate("[...document.querySelectorAll('#assignment option')].map(o => o.value)") == [
            "conv2d",
            "edges",
        ]
        assert tab.evaluate("document.querySelector('#token').hidden") is True  # anonymous on loopback
        tab.choose_file("#notebook", upload)
        tab.evaluate("document.querySelector('#assignment').value = 'conv2d'; document.querySelector('#send').click()")
        tab.wait_for("document.body.dataset.state === 'done'", timeout=120)
        assert tab.evaluate("document.querySelector('#status').textContent") == "Graded: 8 / 10 points"
        link = tab.evaluate("document.querySelector('#feedback-link').href")
        assert re.fullmatch(re.escape(server.url) + r"submissions/[\w-]+/feedback", link)
        sid = link.split("/")[-2]
        assert tab.evaluate("location.hash") == f"#{sid}"
        result = get(server, f"submissions/{sid}")[1]
        assert result["submission"]["file"] == "lesson_literal.ipynb" and result["score"] == 8
        # the feedback page, as the frame shows it: its text, and every picture decoded and drawn
        frame = tab.frame(link)
        assert "follow the lesson literally" in frame.evaluate("document.body.innerText")
        drawn = frame.evaluate(
            "[...document.images].map(i => i.complete && i.naturalWidth > 100 && i.getBoundingClientRect().width > 100)"
        )
        assert drawn == [True] * 12
        assert tab.problems() == []
        if os.environ.get("GRADER_TEST_SCREENSHOT"):  # to look at the page as a student sees it
            shot = tab.call("Page.captureScreenshot", {"format": "png"})["data"]
            Path(os.environ["GRADER_TEST_SCREENSHOT"]).write_bytes(base64.b64decode(shot))
    finally:
        browser.close()


def find_node(node, wanted):
    if wanted(node):
        return node
    for child in [*node.get("children", []), *([node["contentDocument"]] if "contentDocument" in node else [])]:
        found = find_node(child, wanted)
        if found:
            return found
    return None


def collect(node, wanted):
    found = [node] if wanted(node) else []
    for child in [*node.get("children", []), *([node["contentDocument"]] if "contentDocument" in node else [])]:
        found += collect(child, wanted)
    return found
