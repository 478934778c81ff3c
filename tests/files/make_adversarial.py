"""Regenerate tests/files/adversarial/: the reference solution with one attack
cell inserted, each notebook named for what it tries.  Attacks placed after
exercise 2 ("midway") let the tests check that answers captured before the
attack keep their credit; attacks that try to read or change what they must not
raise ``RuntimeError('LEAK: ...')`` when they succeed, so a leak shows in the
result as that cell's error.

    .venv/bin/python tests/files/make_adversarial.py
"""

import copy
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/files/adversarial"
MIDWAY, END = "answer:random_output", "answer:same_output"
IN_ANSWER = "in the same_output answer cell"  # appended to it: the captured same_output is the attack's

ATTACKS = {
    # name: (where, code)
    "infinite_loop": (MIDWAY, "while True:\n    pass"),
    "loop_ignoring_sigint": (MIDWAY, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
    "os_exit_midway": (MIDWAY, "import os\nos._exit(0)"),
    "sys_exit_midway": (MIDWAY, "import sys\nsys.exit('bye')"),
    "segfault_midway": (MIDWAY, "import ctypes\nctypes.string_at(0)"),
    "kill_parent": (MIDWAY, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
    "kill_process_group": (MIDWAY, "import os, signal\nos.killpg(0, signal.SIGKILL)"),
    "kill_every_process": (MIDWAY, "import os, signal\nos.kill(-1, signal.SIGKILL)  # only ever run inside a PID namespace"),
    "fork_bomb_bounded": (END, "import os, time\nchildren = []\nfor _ in range(3000):  # bounded: a real bomb would not stop\n"
                               "    pid = os.fork()\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
                               "    children.append(pid)\nprint(len(children), 'children')"),
    "memory_bomb": (MIDWAY, "import numpy as np\nhog = np.ones(6 * 2**30 // 8)  # 6 GiB, touched\nprint(hog.sum())"),
    "fill_disk": (END, "chunk = b'x' * 2**24\nwith open('filler.bin', 'wb') as f:\n    for _ in range(128):  # up to 2 GiB\n"
                       "        f.write(chunk)\n        f.flush()"),
    "output_flood": (END, "for i in range(200000):\n    print('flood ' * 100)"),
    "read_solution_by_path": (END, "import glob, os\nfor path in ['/work/main/solutions/conv2d/conv2d.ipynb', *glob.glob('/root/.cache/grader/**/*.npy', recursive=True),\n"
                                   "             *glob.glob(os.path.expanduser('~/.cache/grader/**/*.npy'), recursive=True)]:\n"
                                   "    with open(path, 'rb') as f:\n        f.read(10)\n    raise RuntimeError('LEAK: read ' + path)"),
    "search_filesystem": (END, "import os, time\nstart, seen = time.time(), 0\n"
                               "secrets = {'same_output.npy', 'assignment.toml', 'summary.json', 'gradebook.csv'}\n"
                               "for folder, dirs, files in os.walk('/'):\n"
                               "    dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev')]\n"
                               "    for name in files:\n        seen += 1\n"
                               "        if name in secrets or (name.endswith('.ipynb') and 'set_weights(weights)' in open(os.path.join(folder, name), errors='ignore').read()):\n"
                               "            raise RuntimeError('LEAK: found ' + os.path.join(folder, name))\n"
                               "    if time.time() - start > 20:\n        break\nprint(seen, 'files seen')"),
    "network_connection": (END, "import socket\nfor address in [('127.0.0.1', 22), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
                                "    try:\n        socket.create_connection(address, timeout=2).close()\n"
                                "        raise RuntimeError(f'LEAK: connected to {address}')\n"
                                "    except OSError as exc:\n        print(address, exc)"),
    "background_processes": (END, "import os, subprocess, threading, time\n"
                                  "subprocess.Popen(['sleep', '600.25'])\n"
                                  "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
                                  "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                                  "        os.execvp('sleep', ['sleep', '600.75'])\n    os._exit(0)"),
    "monkeypatch_numpy_and_builtins": (IN_ANSWER, "import builtins, sys, types, numpy as np\n"
                                                  "np.allclose = lambda *a, **k: True\nnp.array_equal = lambda *a, **k: True\n"
                                                  "np.isclose = lambda *a, **k: np.True_\n"
                                                  "fake = types.ModuleType('grader.check')\nfake.run_checks = lambda *a, **k: []\n"
                                                  "sys.modules['grader.check'] = sys.modules['grader'] = fake\n"
                                                  "builtins.__import__ = __import__  # a no-op patch of builtins, to show it is allowed\n"
                                                  "same_output = np.zeros((1, 512, 512, 1), dtype='float32')"),
    "object_that_equals_everything": (IN_ANSWER, "class Liar:\n    def __eq__(self, other):\n        return True\n"
                                           "    shape = (1, 512, 512, 1)\n"
                                           "    def __array__(self, dtype=None, copy=None):\n        raise RuntimeError('no')\n"
                                           "same_output = Liar()"),
    "tamper_with_capture": (END, "_grader_capture = None\nimport sys\nsys.modules.pop('_grader_capture', None)"),
}


def main():
    solution = nbformat.read(ROOT / "solutions/conv2d/conv2d.ipynb", as_version=4)
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (where, code) in ATTACKS.items():
        nb = copy.deepcopy(solution)
        if where == IN_ANSWER:
            cell = next(c for c in nb.cells if END in c.metadata.get("tags", []))
            cell.source += "\n" + code
        else:
            index = next(i for i, c in enumerate(nb.cells) if where in c.metadata.get("tags", []))
            nb.cells.insert(index + 1, new_code_cell(code))
        nbformat.write(nb, OUT / f"{name}.ipynb")
    # files that are not notebooks, or are notebooks in odd shapes
    (OUT / "non_utf8_bytes.ipynb").write_bytes(b'{"cells": [], "metadata": {"x": "\xff\xfe"}, "nbformat": 4, "nbformat_minor": 5}')
    (OUT / "deeply_nested_json.ipynb").write_text("[" * 100000 + "]" * 100000)
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": src, "language": "python", "outputs": [], "metadata": {}}
        for src in [c.source for c in solution.cells if c.cell_type == "code"]]}]}
    import json
    (OUT / "nbformat_v3.ipynb").write_text(json.dumps(v3))


if __name__ == "__main__":
    main()
