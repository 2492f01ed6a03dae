"""`latentrm report RUN_DIR`: one self-contained HTML page summarising a run directory.

It reads the files the stages wrote (run.json, data, rm_sweep, rm, audit, rl, eval,
compare, goodhart) and never loads a model, so it renders in seconds. Missing
stages show as "not run". Modules: `load.py` (files -> dict), `views.py` (table
rows), `plots.py` (matplotlib -> base64 PNG), `render.py` (Jinja2 + atomic write),
`cli.py` (the typer command).

    from latentrm.report import build_report
    build_report("runs/quick")  # -> runs/quick/report.html
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["build_report"]

if TYPE_CHECKING:  # pragma: no cover
    from latentrm.report.render import build_report


def __getattr__(name: str) -> Any:
    """Lazy: importing `latentrm.report.cli` to mount the command must not import matplotlib or jinja2."""
    if name == "build_report":
        from latentrm.report.render import build_report

        return build_report
    raise AttributeError(name)
