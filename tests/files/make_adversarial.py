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
IN_RANDOM = "in the random_output answer cell"  # appended to it: what is captured there is the attack's
REPLACE_RANDOM = "instead of the random_output answer cell"
UNTAG_RANDOM = "instead of the random_output answer cell, untagged"

# Attacks on the grader's own files in the scratch root (the parent of the
# working directory): plant a link or a FIFO where the root side reads or
# writes after the notebook ends.  Planting must fail (the root is not the
# student's); whatever happens, the batch must finish with no host file changed.
PLANT = (
    "import os\nroot = os.path.dirname(os.getcwd())\n"
    "def plant(name, make):\n    path = os.path.join(root, name)\n    try:\n"
    "        if os.path.lexists(path):\n            os.unlink(path)\n        make(path)\n"
    "        print('planted', path)\n    except OSError as exc:\n        print('could not plant', path, exc)\n"
)
SYS = (
    "import ctypes, platform\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "NR = {'x86_64': {'add_key': 248, 'keyctl': 250}, 'aarch64': {'add_key': 217, 'keyctl': 219}}[platform.machine()]\n"
)

ATTACKS = {
    # name: (where, code)
    "infinite_loop": (MIDWAY, "while True:\n    pass"),
    "loop_ignoring_sigint": (
        MIDWAY,
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    ),
    "os_exit_midway": (MIDWAY, "import os\nos._exit(0)"),
    "sys_exit_midway": (MIDWAY, "import sys\nsys.exit('bye')"),
    "segfault_midway": (MIDWAY, "import ctypes\nctypes.string_at(0)"),
    "kill_parent": (MIDWAY, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
    "kill_process_group": (MIDWAY, "import os, signal\nos.killpg(0, signal.SIGKILL)"),
    "kill_every_process": (
        MIDWAY,
        "import os, signal\nos.kill(-1, signal.SIGKILL)  # only ever run inside a PID namespace",
    ),
    "fork_bomb_bounded": (
        END,
        "import os, time\nchildren = []\nfor _ in range(3000):  # bounded: a real bomb would not stop\n"
        "    pid = os.fork()\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
        "    children.append(pid)\nprint(len(children), 'children')",
    ),
    "memory_bomb": (MIDWAY, "import numpy as np\nhog = np.ones(6 * 2**30 // 8)  # 6 GiB, touched\nprint(hog.sum())"),
    "fill_disk": (
        END,
        "chunk = b'x' * 2**24\nwith open('filler.bin', 'wb') as f:\n    for _ in range(128):  # up to 2 GiB\n"
        "        f.write(chunk)\n        f.flush()",
    ),
    "output_flood": (END, "for i in range(200000):\n    print('flood ' * 100)"),
    "read_solution_by_path": (
        END,
        "import glob, os\nfor path in ['/work/main/solutions/conv2d/conv2d.ipynb', *glob.glob('/root/.cache/grader/**/*.npy', recursive=True),\n"
        "             *glob.glob(os.path.expanduser('~/.cache/grader/**/*.npy'), recursive=True)]:\n"
        "    with open(path, 'rb') as f:\n        f.read(10)\n    raise RuntimeError('LEAK: read ' + path)",
    ),
    "search_filesystem": (
        END,
        "import os, time\nstart, seen = time.time(), 0\n"
        "secrets = {'same_output.npy', 'assignment.toml', 'summary.json', 'gradebook.csv'}\n"
        "for folder, dirs, files in os.walk('/'):\n"
        "    dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev')]\n"
        "    for name in files:\n        seen += 1\n"
        "        if name in secrets or (name.endswith('.ipynb') and 'set_weights(weights)' in open(os.path.join(folder, name), errors='ignore').read()):\n"
        "            raise RuntimeError('LEAK: found ' + os.path.join(folder, name))\n"
        "    if time.time() - start > 20:\n        break\nprint(seen, 'files seen')",
    ),
    "network_connection": (
        END,
        "import socket\nfor address in [('127.0.0.1', 22), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
        "    try:\n        socket.create_connection(address, timeout=2).close()\n"
        "        raise RuntimeError(f'LEAK: connected to {address}')\n"
        "    except OSError as exc:\n        print(address, exc)",
    ),
    "background_processes": (
        END,
        "import os, subprocess, threading, time\n"
        "subprocess.Popen(['sleep', '600.25'])\n"
        "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '600.75'])\n    os._exit(0)",
    ),
    "monkeypatch_numpy_and_builtins": (
        IN_ANSWER,
        "import builtins, sys, types, numpy as np\n"
        "np.allclose = lambda *a, **k: True\nnp.array_equal = lambda *a, **k: True\n"
        "np.isclose = lambda *a, **k: np.True_\n"
        "fake = types.ModuleType('grader.check')\nfake.run_checks = lambda *a, **k: []\n"
        "sys.modules['grader.check'] = sys.modules['grader'] = fake\n"
        "builtins.__import__ = __import__  # a no-op patch of builtins, to show it is allowed\n"
        "same_output = np.zeros((1, 512, 512, 1), dtype='float32')",
    ),
    "object_that_equals_everything": (
        IN_ANSWER,
        "class Liar:\n    def __eq__(self, other):\n        return True\n"
        "    shape = (1, 512, 512, 1)\n"
        "    def __array__(self, dtype=None, copy=None):\n        raise RuntimeError('no')\n"
        "same_output = Liar()",
    ),
    "tamper_with_capture": (END, "_grader_capture = None\nimport sys\nsys.modules.pop('_grader_capture', None)"),
    # --- the root side must never follow the student (see also the test's dynamic attacks)
    "report_fifo": (END, PLANT + "plant('sandbox.json', os.mkfifo)"),
    "log_fifo": (END, PLANT + "plant('kernel.log', os.mkfifo)"),
    "report_link_to_dev_zero": (END, PLANT + "plant('sandbox.json', lambda p: os.symlink('/dev/zero', p))"),
    "report_link_to_next_scratch": (
        END,
        PLANT + "import re\nmine = os.path.basename(root)\n"
        "others = sorted(set(re.findall(r'/tmp/grader-[^ /]+', open('/proc/self/mountinfo').read())) - {root})\n"
        "print('other scratch folders seen:', others)\n"
        "for other in others:\n    plant('sandbox.json', lambda p: os.symlink(other + '/work/ascent.npy', p))",
    ),
    "answers_folder_swapped": (
        END,
        "import glob, json, os\nimport numpy as np\nroot = os.path.dirname(os.getcwd())\n"
        "for real in glob.glob(root + '/answers-*'):\n"
        "    fake = os.path.join(os.getcwd(), 'fake-answers')\n    os.makedirs(fake, exist_ok=True)\n"
        "    for manifest in glob.glob(real + '/*.json'):\n"
        "        entries = json.load(open(manifest))\n"
        "        for entry in entries.values():\n"
        "            if entry.get('file'):\n"
        "                np.save(os.path.join(fake, entry['file']), np.zeros_like(np.load(os.path.join(real, entry['file']))))\n"
        "        json.dump(entries, open(os.path.join(fake, os.path.basename(manifest)), 'w'))\n"
        "    try:\n        os.rename(real, real + '.moved')\n        os.symlink(fake, real)\n"
        "        print('swapped', real)\n    except OSError as exc:\n        print('could not swap', real, exc)",
    ),
    # --- the channel back to the grader (warm executor: fd 3) flooded without a newline
    "channel_flood": (
        END,
        "import os, socket, stat, time\nkind = os.fstat(3).st_mode if os.path.exists('/proc/self/fd/3') else 0\n"
        "if stat.S_ISSOCK(kind):\n    s = socket.socket(fileno=os.dup(3))\n    end = time.time() + 30\n"
        "    try:\n        while time.time() < end:\n            s.send(b'x' * 65536)\n"
        "    except OSError as exc:\n        print('channel closed:', exc)",
    ),
    # --- the grader's own computations on the student's data
    # A model whose first get_weights() (the grader's capture) returns a 96x96 kernel; later
    # calls are the real model's, so the rest of the notebook runs as written.
    "fake_model_huge_kernel": (
        IN_RANDOM,
        "class FakeModel:\n    def __init__(self, real):\n        self.real, self.calls = real, 0\n"
        "    def get_weights(self):\n        self.calls += 1\n        if self.calls <= 2:\n"
        "            return [np.ones((96, 96, 1, 1), dtype='float32'), np.zeros(1, dtype='float32')]\n"
        "        return self.real.get_weights()\n"
        "    def __getattr__(self, name):\n        return getattr(self.real, name)\n"
        "model = FakeModel(model)",
    ),
    "iopub_flood": (
        END,
        "try:\n    kernel = get_ipython().kernel\nexcept AttributeError:\n    print('no kernel here')\nelse:\n"
        "    big = 'x' * (300 * 2**20)\n    for _ in range(3):\n"
        "        kernel.session.send(kernel.iopub_socket, 'stream', {'name': 'stdout', 'text': big},\n"
        "                            parent=kernel.get_parent('shell'))\n    del big",
    ),
    # --- points not earned: nothing to verify against must not pass
    # (the model is hidden in a list while the answer is captured, and back for the next exercises)
    "zeros_without_model": (
        REPLACE_RANDOM,
        (
            "random_output = np.zeros((1, 255, 510, 1), dtype='float32')\n"
            "model = Sequential()\nmodel.add(Conv2D(1, (3, 3), strides=(2, 1), input_shape=(512, 512, 1)))\n"
            "model.compile('adam', 'mse')\nhidden = [model]\nmodel = None",
            "model = hidden[0]",
        ),
    ),
    "zeros_via_globals_untagged": (
        UNTAG_RANDOM,
        "globals()['random_' + 'output'] = np.zeros((1, 255, 510, 1), dtype='float32')\n"
        "model = Sequential()\nmodel.add(Conv2D(1, (3, 3), strides=(2, 1), input_shape=(512, 512, 1)))\n"
        "model.compile('adam', 'mse')",
    ),
    # --- nothing seen or kept across submissions
    "environment_secrets": (
        END,
        "import os\nfound = sorted(k for k, v in os.environ.items()\n"
        "               if k.startswith(('TF_TOKEN', 'TF_VAR', 'GRADER_')) or 'operator-secret' in v)\n"
        "if found:\n    raise RuntimeError(f'LEAK: the grader\\'s environment: {found}')",
    ),
    "snoop_other_submissions": (
        END,
        "import glob, os\nroot = os.path.dirname(os.getcwd())\n"
        "cgroups = glob.glob('/sys/fs/cgroup/*/grader/*')\n"
        "mounts = [l for l in open('/proc/self/mountinfo') if 'grader-' in l and root not in l]\n"
        "if cgroups or mounts:\n    raise RuntimeError(f'LEAK: cgroups {cgroups[:3]}, mounts {mounts[:3]}')",
    ),
    "keyring_writer": (
        END,
        SYS
        + "key = libc.syscall(NR['add_key'], b'user', b'grader-keyring-test', b'left by an earlier student', 26, ctypes.c_int(-4))\n"
        "ring = libc.syscall(NR['keyctl'], 0, ctypes.c_int(-4), 0)\n"
        "# view, read and search only: a user keyring its own uid can no longer clear\n"
        "locked = libc.syscall(NR['keyctl'], 5, ctypes.c_int(ring), ctypes.c_uint(0x0B0B0000))\n"
        "print('stored key', key, 'locked', locked, ctypes.get_errno())",
    ),
    "keyring_reader": (
        END,
        SYS + "for keyring in (-4, -5, -3):\n"
        "    key = libc.syscall(NR['keyctl'], 10, ctypes.c_int(keyring), b'user', b'grader-keyring-test', 0)\n"
        "    if key > 0:\n        raise RuntimeError(f'LEAK: a key left by another submission, in keyring {keyring}')",
    ),
    # --- host resources
    "pty_exhaustion": (
        END,
        "import os\nptys = []\ntry:\n    for _ in range(300):\n        ptys.append(os.openpty())\n"
        "except OSError as exc:\n    print(len(ptys), 'ptys, then', exc)\n"
        "if len(ptys) > 64:\n    raise RuntimeError(f'LEAK: {len(ptys)} ptys from the host')",
    ),
    "inode_exhaustion": (
        END,
        "import os\nfor folder in ('/dev/shm', '/tmp'):\n    made = 0\n    try:\n"
        "        for i in range(200000):\n            open(f'{folder}/f{i}', 'w').close()\n            made += 1\n"
        "    except OSError as exc:\n        print(folder, made, 'files, then', exc)\n"
        "    if made >= 100000:\n        raise RuntimeError(f'LEAK: {made} files in {folder}')",
    ),
}

# Six answers of 64 MB of random bytes each (incompressible), for --keep-answers
BLOAT = [
    "import numpy as np\nclass M:\n    def get_weights(self):\n"
    "        return [np.random.rand(8 * 2**20), np.random.rand(8 * 2**20)]\nmodel = M()"
] + [f"{name} = np.random.rand(8 * 2**20)" for name in ("img_tensor", "random_output", "average_output", "same_output")]


def main():
    solution = nbformat.read(ROOT / "solutions/conv2d/conv2d.ipynb", as_version=4)
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (where, code) in ATTACKS.items():
        nb = copy.deepcopy(solution)
        if where in (IN_ANSWER, IN_RANDOM):
            cell = next(c for c in nb.cells if (END if where == IN_ANSWER else MIDWAY) in c.metadata.get("tags", []))
            cell.source += "\n" + code
        elif where in (REPLACE_RANDOM, UNTAG_RANDOM):
            index = next(i for i, c in enumerate(nb.cells) if MIDWAY in c.metadata.get("tags", []))
            cell = nb.cells[index]
            cell.source, after = code if isinstance(code, tuple) else (code, None)
            if after:
                nb.cells.insert(index + 1, new_code_cell(after))
            if where == UNTAG_RANDOM:
                cell.metadata["tags"] = []
        else:
            index = next(i for i, c in enumerate(nb.cells) if where in c.metadata.get("tags", []))
            nb.cells.insert(index + 1, new_code_cell(code))
        nbformat.write(nb, OUT / f"{name}.ipynb")
    bloat = nbformat.v4.new_notebook(
        cells=[new_code_cell(BLOAT[0], metadata={"tags": ["answer:random_output"]})]
        + [new_code_cell(code, metadata={"tags": [f"answer:{code.split()[0]}"]}) for code in BLOAT[1:]]
    )
    nbformat.write(bloat, OUT / "keep_answers_bloat.ipynb")
    # files that are not notebooks, or are notebooks in odd shapes
    (OUT / "non_utf8_bytes.ipynb").write_bytes(
        b'{"cells": [], "metadata": {"x": "\xff\xfe"}, "nbformat": 4, "nbformat_minor": 5}'
    )
    (OUT / "deeply_nested_json.ipynb").write_text("[" * 100000 + "]" * 100000)
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "code", "input": src, "language": "python", "outputs": [], "metadata": {}}
                    for src in [c.source for c in solution.cells if c.cell_type == "code"]
                ]
            }
        ],
    }
    import json

    (OUT / "nbformat_v3.ipynb").write_text(json.dumps(v3))


if __name__ == "__main__":
    main()
