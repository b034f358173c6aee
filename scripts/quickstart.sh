#!/usr/bin/env bash
# Set up and run the main job: train SimpleNN on CIFAR-10 (from ../shared/data unless --data-root/CNNLAB_DATA say
# otherwise) into runs/quickstart/, then write its report. Extra arguments are config overrides (key=value).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CNNLAB_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
export CNNLAB_DATA="${CNNLAB_DATA:-../shared/data}"
"$VENV/bin/cnnlab" train -c configs/quickstart.yaml name=quickstart --overwrite "$@"
if "$VENV/bin/cnnlab" report --help >/dev/null 2>&1; then
  "$VENV/bin/cnnlab" report runs/quickstart --out runs/quickstart/report.html
fi
