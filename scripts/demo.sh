#!/usr/bin/env bash
# The main job on the embedded model (SmolLM2-135M-Instruct, 2 CPU cores): the whole method in one command.
# data -> features -> layer x head sweep -> reward model -> audit -> eval -> GRPO -> eval -> runs/quick/report.html
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/latentrm run --preset quick "$@"
