#!/usr/bin/env bash
# Refresh constraints.txt: install the newest releases that pyproject.toml allows into a
# throw-away venv, run the test suite there, and only if it passes write their versions.
#   bash scripts/refresh_constraints.sh        # then review `git diff constraints.txt` and commit
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
VENV="$venv" LATENTRM_CONSTRAINTS=none bash scripts/setup.sh
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false "$venv/bin/python" -m pytest -q -p no:cacheprovider
{
  echo "# Versions the test suite passed with (Python $("$venv/bin/python" -c 'import sys; print(".".join(map(str, sys.version_info[:2])))'), CPU, $(date -u +%Y-%m-%d))."
  echo "# scripts/setup.sh installs with '-c constraints.txt'; LATENTRM_CONSTRAINTS=none skips it."
  echo "# torch is left out on purpose: setup installs torch==2.13.0 (CPU) only when no torch is present."
  echo "# Refresh: bash scripts/refresh_constraints.sh (a fresh venv without constraints, the suite, then a freeze)."
  "$venv/bin/python" -m pip freeze --exclude-editable | grep -viE '^(torch|latentrm)==' | sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt refreshed; review 'git diff constraints.txt' and commit it"
