#!/usr/bin/env bash
# The tests as CI runs them, in one command: install what they need, lint with ruff, run pytest.
# Offline and on the CPU; arguments go to pytest (`bash tools/test.sh -k resume`).
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
# Into the active Python: a virtual environment of the project's own, or CI's interpreter.
echo "tools/test.sh: installing the packages of requirements-test.txt and" \
    "TextBrewer 0.2.1 (--no-deps) into $(python -c 'import sys; print(sys.prefix)')"
pip_install -r requirements-test.txt
# TextBrewer 0.2.1, the parity tests' peer, without its pinned dependencies (they would replace torch).
pip_install --no-deps textbrewer==0.2.1.post1
python -m ruff check .
python -m ruff format --check .
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # the tests never download anything
python -m pytest -q tests "$@"
