"""A real `grader serve` for the tests: a subprocess on 127.0.0.1, a free port,
its own data folder; and the few HTTP calls the tests make (urllib)."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    data: Path

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        """kill -9: no chance to finish anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def start_server(data: Path, *options: str, env: dict | None = None, ready: bool = True, timeout: float = 180.0):
    """Start `grader serve --port 0 --data DATA OPTIONS`; wait until it
    listens (and, with ``ready``, until /healthz says the pool is warm)."""
    data.mkdir(parents=True, exist_ok=True)
    with open(data.parent / f"{data.name}-server.log", "ab") as log:  # the service's stderr, to read when a test fails
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grader",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data",
                str(data),
                *options,
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
        )
    line = proc.stdout.readline().decode()
    if "listening on" not in line:
        proc.wait(30)
        raise AssertionError(f"grader serve did not start ({proc.returncode}): {line}")
    url = line.split("listening on ", 1)[1].split()[0]
    server = Server(url, proc, data)
    deadline = time.monotonic() + timeout
    while ready and time.monotonic() < deadline:
        status, body = get(server, "healthz")
        if status == 200:
            break
        assert "failed" not in body["status"], body
        time.sleep(0.2)
    else:
        assert not ready, "the pool never became ready"
    return server


def request(server, method, path, body=None, headers=None):
    """(status, headers, body bytes); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(server.url + path, body, headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def get(server, path, headers=None):
    status, _, body = request(server, "GET", path, headers=headers)
    return status, json.loads(body)


def post_notebook(server, assignment, notebook: Path, token=None, name=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    query = f"?filename={name or notebook.name}"
    status, _, body = request(
        server, "POST", f"assignments/{assignment}/submissions{query}", notebook.read_bytes(), headers
    )
    return status, json.loads(body)


def wait_result(server, sid, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = get(server, f"submissions/{sid}?wait=30")
        if status == 200:
            return body
        assert status == 202, body
    raise AssertionError(f"{sid} was not graded within {timeout} s")


def multipart(field, filename, data: bytes, boundary="grader-test-boundary"):
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/x-ipynb+json\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
