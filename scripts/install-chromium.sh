#!/usr/bin/env bash
# Install headless Chromium (Debian package `chromium`) for the tests that render the HTML report the way a person
# sees it and print it to PDF, and poppler-utils (pdfinfo, pdftotext, pdftoppm) for the test that reads that PDF.
# Idempotent: does nothing when both are there. Needs root (or sudo) and apt; where it
# cannot install, it says why and exits non-zero, and the screenshot test skips with that reason.
set -euo pipefail
if [ -x /usr/bin/chromium ] && command -v pdftotext >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: apt-get not found; install Chromium with your system's package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-chromium: not root and no password-less sudo; run: sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core poppler-utils >/dev/null
[ -x /usr/bin/chromium ] && echo "install-chromium: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
