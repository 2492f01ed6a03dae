#!/usr/bin/env bash
# The main job on the embedded model (SmolLM2-135M-Instruct, CPU):
# train a latent reward model on the shipped pairs file and print per-subset metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/latentrm rm train --pairs examples/pairs.jsonl --run-dir runs/quick "$@"
