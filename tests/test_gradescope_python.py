"""setup.sh's choice of Python: a final CPython 3.11 that an unprivileged
user can run, never a release candidate.  The choice is replayed against
recorded `apt-cache policy` outputs of Ubuntu 22.04 and 24.04 (before and
after the deadsnakes PPA) through stub apt tools, and run for real on this
machine's Debian."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from grader.platforms.gradescope.bundle import template

POLICIES = Path(__file__).parent / "files" / "apt-cache-policy"
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="{}"\n'
DEBIAN = 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n'

APT_CACHE = """#!/bin/sh
[ "$1" = policy ] || exit 1
if [ -e "$STATE/ppa" ] && [ -e "$POLICIES/$RELEASE-deadsnakes.txt" ]; then cat "$POLICIES/$RELEASE-deadsnakes.txt"
else cat "$POLICIES/$RELEASE.txt"; fi
"""
# apt-get "installs" python3.11=VERSION as a stand-in interpreter that
# behaves as that version would: a release candidate fails setup.sh's
# releaselevel check, a final release passes it.
APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$STATE/log"
[ "$1" = install ] || exit 0
for arg in "$@"; do
  case "$arg" in python3.11=*)
    version="${arg#python3.11=}"; upstream="${version%%-*}"
    case "$upstream" in *~*) code=1;; *) code=0;; esac
    printf '#!/bin/sh\\ncase "$*" in *platform*) echo %s;; esac\\nexit %s\\n' "$upstream" "$code" > "$STATE/python3.11"
    chmod +x "$STATE/python3.11";;
  esac
done
"""
ADD_APT_REPOSITORY = """#!/bin/sh
echo "add-apt-repository $*" >> "$STATE/log"
touch "$STATE/ppa"
"""
UV = """#!/bin/sh
echo "uv $*" >> "$STATE/log"
case "$*" in
  "python install"*) printf '#!/bin/sh\\ncase "$*" in *platform*) echo 3.11.14;; esac\\nexit 0\\n' > "$STATE/uv-python"
                     chmod +x "$STATE/uv-python";;
  "python find"*) [ -x "$STATE/uv-python" ] && echo "$STATE/uv-python" || exit 2;;
esac
"""
SETPRIV = """#!/bin/sh
echo "setpriv $*" >> "$STATE/log"
shift 3
exec "$@"
"""


def choose(tmp_path: Path, release: str, os_release: str, candidates: str = "", tools=("apt-get", "uv")) -> tuple:
    """Source setup.sh and run choose_python with the stubs first on PATH;
    returns (exit status, the chosen path, the stubs' log, stderr)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    stubs = {"apt-cache": APT_CACHE, "add-apt-repository": ADD_APT_REPOSITORY, "setpriv": SETPRIV}
    stubs |= {"apt-get": APT_GET} if "apt-get" in tools else {}
    stubs |= {"uv": UV} if "uv" in tools else {}
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "os-release").write_text(os_release)
    (tmp_path / "setup.sh").write_text(template("setup.sh"))
    # only the stubs and the basic tools: no real apt-get, uv or python3.11 to find
    basics = tmp_path / "basics"
    basics.mkdir()
    for tool in ("awk", "cat", "chmod", "touch", "id", "dirname", "sh", "printf", "bash"):
        found = shutil.which(tool)
        if found:
            (basics / tool).symlink_to(found)
    env = {
        "PATH": f"{bin_dir}:{basics}",
        "STATE": str(state),
        "POLICIES": str(POLICIES),
        "RELEASE": release,
        "OS_RELEASE": str(tmp_path / "os-release"),
        "APT_PYTHON": str(state / "python3.11"),
        "PYTHON_CANDIDATES": candidates,
    }
    proc = subprocess.run(
        ["bash", "-c", f'. "{tmp_path}/setup.sh" && choose_python'], env=env, capture_output=True, text=True
    )
    log = (state / "log").read_text().splitlines() if (state / "log").exists() else []
    return proc.returncode, proc.stdout.strip(), log, proc.stderr


def installs(log: list[str]) -> list[str]:
    return [line for line in log if line.startswith("apt-get install") and "python3.11=" in line]


@pytest.mark.parametrize(
    ("release", "os_release", "version"),
    [
        ("jammy", UBUNTU.format("22.04"), "3.11.15-1+jammy1"),  # the archive has 3.11.0~rc1: deadsnakes instead
        ("noble", UBUNTU.format("24.04"), "3.11.15-1+noble1"),  # the archive has no 3.11 at all
    ],
)
def test_ubuntu_gets_deadsnakes_final_release_never_the_release_candidate(tmp_path, release, os_release, version):
    status, chosen, log, err = choose(tmp_path, release, os_release)
    assert status == 0, err
    assert chosen == str(tmp_path / "state" / "python3.11")
    assert "add-apt-repository -y ppa:deadsnakes/ppa" in log
    assert installs(log) == [
        f"apt-get install -y --no-install-recommends python3.11={version} python3.11-venv={version}"
    ]
    assert not any("~rc" in line for line in installs(log))
    if release == "jammy":
        assert "python3.11 is 3.11.0~rc1-1~22.04, not a final release: not installed" in err


def test_debian_takes_its_archive_final_release_without_a_ppa(tmp_path):
    status, chosen, log, err = choose(tmp_path, "bookworm", DEBIAN)
    assert status == 0, err
    assert chosen == str(tmp_path / "state" / "python3.11")
    assert installs(log) == [
        "apt-get install -y --no-install-recommends python3.11=3.11.2-6+deb12u9 python3.11-venv=3.11.2-6+deb12u9"
    ]
    assert not any(line.startswith("add-apt-repository") for line in log)


def test_a_usable_python_already_there_installs_nothing(tmp_path):
    existing = tmp_path / "python3.11"
    existing.write_text('#!/bin/sh\ncase "$*" in *platform*) echo 3.11.9;; esac\nexit 0\n')
    existing.chmod(0o755)
    status, chosen, log, err = choose(tmp_path, "jammy", UBUNTU.format("22.04"), candidates=str(existing))
    assert status == 0, err
    assert chosen == str(existing)
    assert not any(line.startswith(("apt-get", "add-apt-repository", "uv")) for line in log)
    assert "using " + str(existing) + " (3.11.9)" in err
    assert any(line.startswith("setpriv --reuid=65534") for line in log)  # run as an unprivileged user first


def test_a_release_candidate_already_there_is_not_used(tmp_path):
    rc = tmp_path / "python3.11"
    rc.write_text("#!/bin/sh\nexit 1\n")  # what the releaselevel check gets from 3.11.0rc1
    rc.chmod(0o755)
    status, chosen, log, err = choose(tmp_path, "jammy", UBUNTU.format("22.04"), candidates=str(rc))
    assert status == 0, err
    assert chosen != str(rc) and "deadsnakes" in " ".join(log)


def test_without_apt_a_uv_managed_python(tmp_path):
    status, chosen, log, err = choose(tmp_path, "jammy", UBUNTU.format("22.04"), tools=("uv",))
    assert status == 0, err
    assert chosen == str(tmp_path / "state" / "uv-python")
    assert "uv python install 3.11" in log


def test_no_python_anywhere_fails_the_build_saying_so(tmp_path):
    status, chosen, _, err = choose(tmp_path, "noble", DEBIAN, tools=())
    assert status != 0 and chosen == ""
    assert "error: found no final CPython 3.11 and could not install one" in err


@pytest.mark.parametrize(
    ("version", "final"),
    [
        ("3.11.0~rc1-1~22.04", False),
        ("3.11.15-1+jammy1", True),
        ("3.11.2-6+deb12u9", True),
        ("1:3.11.4-1", True),
        ("3.11.0~b1-1", False),
        ("3.12.3-1ubuntu0.1", False),
        ("", False),
    ],
)
def test_final_version_reads_debian_versions(version, final):
    proc = subprocess.run(
        ["bash", "-c", f'. "$1" && final_version "{version}"', "bash", _setup_file()], capture_output=True, text=True
    )
    assert (proc.returncode == 0) is final


@pytest.mark.skipif(not shutil.which("apt-cache") or not Path("/etc/debian_version").exists(), reason="needs apt")
def test_on_this_machine_for_real(tmp_path):
    """This machine's apt and Pythons, no stubs: apt's candidate is read and
    judged, and the Python chosen starts as an unprivileged user."""
    script = (
        f'. "{_setup_file()}" && v="$(apt_candidate python3.11)" && echo "$v" && final_version "$v" && choose_python'
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)  # never apt here
    assert proc.returncode == 0, proc.stderr
    candidate, chosen = proc.stdout.split()[0], proc.stdout.split()[-1]
    assert candidate.startswith("3.11.")
    check = "import sys; print(sys.version_info.releaselevel)"
    if os.geteuid() == 0:
        run = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", chosen, "-c", check]
    else:
        run = [chosen, "-c", check]
    assert subprocess.run(run, capture_output=True, text=True).stdout.strip() == "final"


def _setup_file() -> str:
    path = Path(__file__).parent / ".." / "grader" / "platforms" / "gradescope" / "templates" / "setup.sh"
    return str(path.resolve())
