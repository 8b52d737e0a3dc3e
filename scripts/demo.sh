#!/usr/bin/env bash
# First README command: set everything up, then run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lookalike run configs/demo.yaml
