#!/usr/bin/env bash
# Set up and run the main job: train a SimpleNN (with BN, configs/fast65.yaml) on CIFAR-10 from ../shared/data
# (or wherever CNNLAB_DATA points) into runs/quickstart/, then write its report (runs/quickstart/report.html and .md).
# Extra arguments are config overrides (key=value), e.g. scripts/quickstart.sh train.epochs=30.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CNNLAB_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e . \
  2> >(grep -v "^WARNING: Location" >&2)  # pip.conf's find-links warnings on this machine drown real messages
export CNNLAB_DATA="${CNNLAB_DATA:-../shared/data}"
"$VENV/bin/cnnlab" train -c configs/fast65.yaml name=quickstart --overwrite "$@"
"$VENV/bin/cnnlab" report runs/quickstart --out runs/quickstart/report.html
