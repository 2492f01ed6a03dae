"""The `latentrm report RUN_DIR` command: write RUN_DIR/report.html (mounted by `latentrm.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report(
    run_dir: Path = typer.Argument(..., help="run directory, e.g. runs/quick"),
    out: Optional[Path] = typer.Option(None, help="output HTML file; default RUN_DIR/report.html"),
) -> None:
    """Render a run directory into one self-contained HTML report (no model is loaded)."""
    from latentrm.report.render import build_report

    print(f"report written to {build_report(run_dir, out)}")
