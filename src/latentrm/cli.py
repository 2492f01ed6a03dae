"""The `latentrm` command line: a thin typer app, one sub-command group per stage.

Heavy libraries (torch, transformers, pandas) are imported inside the commands,
so `latentrm --help` answers at once. Every `LatentrmError` becomes a one-line
`error: ...` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from latentrm.errors import LatentrmError

app = typer.Typer(
    name="latentrm",
    help="Bradley-Terry reward models on a frozen LLM's hidden states: data, features, heads, audit, RL, eval, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _mount_stage_groups() -> None:
    """Mount the stage groups that live in their own packages (each cli module imports only typer)."""
    from latentrm.audit.cli import register as register_audit
    from latentrm.data.cli import app as data_app
    from latentrm.eval.cli import app as eval_app
    from latentrm.pipeline.cli import run as run_command
    from latentrm.report.cli import report as report_command
    from latentrm.rl.cli import app as rl_app
    from latentrm.rl.cli import baseline as baseline_command
    from latentrm.rm.cli import app as rm_app
    from latentrm.rm.cli import features as features_command
    from latentrm.serve.cli import serve

    app.add_typer(rm_app, name="rm")
    app.command("features")(features_command)
    app.add_typer(data_app, name="data")
    app.add_typer(eval_app, name="eval")
    app.add_typer(rl_app, name="rl")
    app.command("baseline")(baseline_command)
    app.command("serve")(serve)
    app.command("run")(run_command)
    app.command("report")(report_command)
    register_audit(rm_app)


_mount_stage_groups()


def _click_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage-error classes, abort classes): typer >= 0.25 vendors click as `typer._click`, older typer uses click."""
    import importlib

    errors: list[type[BaseException]] = []
    aborts: list[type[BaseException]] = [typer.Abort]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.ClickException)
        if hasattr(module, "Abort"):
            aborts.append(module.Abort)
    return tuple(errors), tuple(aborts)


def usage_error_line(exc: BaseException) -> str:
    """A click/typer usage error as one line: `--epochs: Input should be ...; see `latentrm rm train --help``.

    click prints the usage block plus `Error: Invalid value for '--epochs': ...` over several lines; every
    other error of this CLI is one `error:` line, so these are too.
    """
    message = str(getattr(exc, "format_message", lambda: str(exc))())
    param = getattr(exc, "param", None)
    if type(exc).__name__ == "BadParameter" and param is not None:
        opts = [opt for opt in (getattr(param, "opts", None) or []) if opt.startswith("--")]
        message = f"{opts[0] if opts else param.name}: {getattr(exc, 'message', message)}"
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        message = f"{message.rstrip('.')}; see `{ctx.command_path} --help`"
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning `LatentrmError` and usage errors into one line and exit code 2."""
    _quiet_libraries()
    usage_errors, aborts = _click_exceptions()
    try:
        code = app(args=argv, prog_name="latentrm", standalone_mode=False)
    except LatentrmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted; finished work is saved and the next run resumes", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except usage_errors as exc:  # bad option values, unknown options, missing options
        print(f"error: {usage_error_line(exc)}", file=sys.stderr)
        raise SystemExit(int(getattr(exc, "exit_code", 2)) or 2) from None
    except aborts:
        raise SystemExit(1) from None
    if isinstance(code, int) and code:  # typer.Exit(n) inside a command comes back as a return value
        raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
