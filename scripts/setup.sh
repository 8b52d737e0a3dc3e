#!/usr/bin/env bash
# Set up lookalike on a fresh Debian/Ubuntu machine: system packages, a virtualenv in .venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=()
  [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
  command -v chromium >/dev/null || missing+=(chromium)  # the App tests drive it headless
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
elif [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null; then
  echo "note: install dataset-fashion-mnist (the demo) and chromium (the App tests) with apt-get" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"
