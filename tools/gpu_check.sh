#!/usr/bin/env bash
# Everything a GPU check needs, in one command, so that a lent GPU's minutes go into measuring:
#
#   bash tools/gpu_check.sh          # install, then tools/gpu_report.py at the published sizes
#   bash tools/gpu_check.sh --tiny   # the same path at toy sizes, on any machine, no install
#                                    # (torch.compile backend "eager": no code, no CUDA graphs)
#
# The install leaves torch as it is when it imports (the CUDA build of the pinned version: see
# the README) and installs it from requirements.txt only when it is missing; everything else in
# requirements.txt is installed as pinned. Then it checks that torch sees a GPU and runs the
# report (the training steps in fp16 and bf16, the levers of --compile, --group_by_length and
# --teacher_dtype with their 40-epoch projections, the host-wait check, evaluation), written to
# the terminal as it is measured. Further arguments go to tools/gpu_report.py; the exit status
# is the report's (1 when a training step waits for the host where it should not).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PYTHON:=python}"

if [[ "${1:-}" == --tiny ]]; then
    shift
    # One step, round and epoch of each configuration; torch.compile's "eager" backend, because
    # code generation for the toy models would take minutes on a few CPU cores.
    exec "$PYTHON" -m tools.gpu_report --tiny --steps 1 --rounds 1 --lever_rounds 1 --compile_backend eager "$@"
fi

pip_install() { "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@"; }
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
if "$PYTHON" -c "import torch" 2>/dev/null; then
    grep -v '^torch==' requirements.txt > "$requirements"  # keep the installed (CUDA) build
else
    cp requirements.txt "$requirements"
fi
# A GPU machine without a network keeps what it has: the check below names what is missing.
pip_install -r "$requirements" || echo "pip could not install requirements.txt (no network?): going on with what is installed" >&2
"$PYTHON" - <<'PY'
import sys

import pyemd  # noqa: F401  (EMD's row)
import torch
import transformers  # noqa: F401

if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no GPU: install its CUDA build (README), or run with --tiny")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}", flush=True)
PY
SECONDS=0
"$PYTHON" -u -m tools.gpu_report "$@"
echo "tools/gpu_report.py took ${SECONDS} s"
