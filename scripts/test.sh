#!/usr/bin/env bash
# Run the test suite offline (set LATENTRM_FAST=1 to skip tests marked slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${LATENTRM_FAST:-0}" = "1" ]; then
  exec .venv/bin/python -m pytest -m "not slow" "$@"
fi
exec .venv/bin/python -m pytest "$@"
