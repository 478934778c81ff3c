#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# It finds or installs a final CPython 3.11 (never a release candidate) that an
# unprivileged user can run, creates /autograder/venv with the pinned
# requirements, the course's packages and this bundle's grader, keeps the
# bundle away from students' code, then grades the bundled known-good notebook:
# unless it gets full marks the build fails, so a broken image never grades.
#
# Sourced (`. setup.sh`) it only defines its functions, for tests.  Settings
# for trying it elsewhere: PYTHON_CANDIDATES (interpreters tried first),
# APT_PYTHON (where apt puts python3.11), OS_RELEASE, UV_PYTHON_DIR.
set -euo pipefail

PYTHON_SERIES="3.11"
DEADSNAKES="ppa:deadsnakes/ppa"

log() { echo "setup.sh: $*" >&2; }

# 0 if "$1" is a final CPython 3.11 with venv and ensurepip that an
# unprivileged user can start (students' code runs as one).
usable_python() {
    local py="$1"
    [ -n "$py" ] && [ -x "$py" ] || return 1
    "$py" -c 'import sys, venv, ensurepip
sys.exit(0 if sys.version_info[:2] == (3, 11) and sys.version_info.releaselevel == "final" else 1)' \
        >/dev/null 2>&1 || return 1
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
        setpriv --reuid=65534 --regid=65534 --clear-groups "$py" -c 'import encodings, venv' >/dev/null 2>&1 || {
            log "$py is a final 3.11 but an unprivileged user cannot run it (a private home?): not used"
            return 1
        }
    fi
}

# The version apt would install ("Candidate:" of apt-cache policy), or nothing.
apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'
}

# 0 if a Debian version string is a final upstream release of the series:
# 3.11.2-6+deb12u9 and 1:3.11.14-1+jammy1 are; 3.11.0~rc1-1~22.04 is not.
final_version() {
    local upstream="${1#*:}"
    upstream="${upstream%%-*}"
    [[ "$upstream" =~ ^3\.11\.[0-9]+$ ]]
}

os_id() { (. "${OS_RELEASE:-/etc/os-release}" && echo "${ID:-unknown}") 2>/dev/null || echo unknown; }

apt_install_python() {
    local version="$1"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "python${PYTHON_SERIES}=${version}" "python${PYTHON_SERIES}-venv=${version}"
}

uv_python() {
    local dir="${UV_PYTHON_DIR:-/opt/grader-python}"
    if ! command -v uv >/dev/null 2>&1; then
        python3 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages uv
    fi
    UV_PYTHON_INSTALL_DIR="$dir" uv python install "$PYTHON_SERIES" >&2
    chmod -R a+rX "$dir"
    UV_PYTHON_INSTALL_DIR="$dir" UV_PYTHON_PREFERENCE=only-managed uv python find "$PYTHON_SERIES"
}

# Install apt's candidate python3.11 if it is a final release and print its
# path; "$1" names where the candidate comes from, for the log.
apt_python() {
    local candidate path="${APT_PYTHON:-/usr/bin/python3.11}"
    candidate="$(apt_candidate "python${PYTHON_SERIES}")"
    if [ -z "$candidate" ] || ! final_version "$candidate"; then
        log "$1 python${PYTHON_SERIES} is ${candidate:-absent}, not a final release: not installed"
        return 1
    fi
    log "installing python${PYTHON_SERIES} ${candidate} ($1)"
    apt_install_python "$candidate" >&2
    usable_python "$path" && echo "$path"
}

# Print the path of the Python to build the venv with, installing one if none
# here will do: apt's python3.11 if it is a final release, else deadsnakes'
# (Ubuntu), else a uv-managed CPython.
choose_python() {
    local py
    # shellcheck disable=SC2086  # a list of paths
    for py in ${PYTHON_CANDIDATES-/usr/bin/python3.11 /usr/local/bin/python3.11 $(command -v python3.11 || true)}; do
        if usable_python "$py"; then
            log "using $py ($("$py" -c 'import platform; print(platform.python_version())'))"
            echo "$py"
            return 0
        fi
    done
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update >&2
        if apt_python "the archive's"; then return 0; fi
        if [ "$(os_id)" = ubuntu ]; then
            log "adding $DEADSNAKES"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                software-properties-common gpg-agent >&2
            add-apt-repository -y "$DEADSNAKES" >&2
            apt-get update >&2
            if apt_python "deadsnakes'"; then return 0; fi
        fi
    fi
    log "no final Python ${PYTHON_SERIES} from apt: trying a uv-managed CPython"
    if py="$(uv_python)" && usable_python "$py"; then
        echo "$py"
        return 0
    fi
    log "error: found no final CPython ${PYTHON_SERIES} and could not install one"
    return 1
}

main() {
    set -x
    local source root venv python
    source="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    root="$(dirname "$source")"
    venv="$root/venv"
    if [ ! -f "$source/gradescope.json" ]; then
        log "error: $source is not an unpacked autograder bundle (no gradescope.json)"
        exit 1
    fi
    python="$(choose_python)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --upgrade pip
    "$venv/bin/python" -m pip install -r "$source/requirements.txt"
    if [ -s "$source/course-requirements.txt" ]; then
        # the course's packages, without moving any of the grader's pins
        "$venv/bin/python" -m pip install -r "$source/course-requirements.txt" -c "$source/requirements.txt"
    fi
    "$venv/bin/python" -m pip install --no-deps "$source"
    chmod -R a+rX "$venv"
    # Students' code runs as an unprivileged user: the bundle (references,
    # spec, known-good notebook) is root's alone.  The grader it runs is the
    # copy installed in the venv.
    chown -R root:root "$source"
    chmod 0700 "$source"
    cd "$root"
    "$venv/bin/python" -m grader.platforms.gradescope --check --root "$root"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
