#!/usr/bin/env bash
# Set up (virtual environment + install) and run the test suite. This is the README's test command; .ci/run calls it.
# The whole suite, slow tests included (about 10 minutes on 2 quiet cores); a quick run: scripts/test.sh -m 'not slow'
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CNNLAB_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' \
  2> >(grep -v "^WARNING: Location" >&2)  # pip.conf's find-links warnings on this machine drown real messages
# Headless Chromium renders the HTML report in one test; install it where missing (skipped if it cannot be had).
[ -x scripts/install-chromium.sh ] && { scripts/install-chromium.sh || echo "note: chromium not installed; its test will skip"; }
exec "$VENV/bin/python" -m pytest -n 2 -p no:cacheprovider "$@"
