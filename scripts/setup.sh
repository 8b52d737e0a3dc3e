#!/usr/bin/env bash
# Set up lookalike on a fresh Debian/Ubuntu machine: system packages, a virtualenv in .venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
elif [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "note: install Debian's dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist) for the demo" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"
