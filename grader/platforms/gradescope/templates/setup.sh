#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# It installs Python 3.11 if the image lacks it, creates /autograder/venv with
# the pinned requirements and this bundle's grader, then grades the bundled
# template once so that a broken image fails now, not at the first submission.
set -euxo pipefail
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$SOURCE")"
VENV="$ROOT/venv"
export DEBIAN_FRONTEND=noninteractive

has_python311() { command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1; }

if ! has_python311; then
    apt-get update
    if ! apt-get install -y --no-install-recommends python3.11 python3.11-venv; then
        # Ubuntu releases whose archive has no Python 3.11 (24.04): the deadsnakes PPA has it
        apt-get install -y --no-install-recommends software-properties-common gpg-agent
        add-apt-repository -y ppa:deadsnakes/ppa
        apt-get update
        apt-get install -y --no-install-recommends python3.11 python3.11-venv
    fi
fi

python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -r "$SOURCE/requirements.txt"
"$VENV/bin/python" -m pip install --no-deps "$SOURCE"
cd "$SOURCE"
"$VENV/bin/python" -m grader.platforms.gradescope --check --root "$ROOT"
