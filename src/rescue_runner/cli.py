"""The `rescue` command: parse options, call rescue_runner.app, render, return an exit code.

Exit codes: 0 ok, 1 findings, 2 usage/configuration/environment error.
Heavy libraries (dbt, prefect, git) are imported only inside the commands that need them.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .errors import RescueError

FORMATS = ("text", "json", "github", "markdown")


def _load_config(ctx: click.Context, project_dir: Path | None, profiles_dir: Path | None,
                 target: str | None, manifest: Path | None, state: Path | None, base: Any = None) -> Any:
    """The repository configuration with command-line overrides applied (flags beat rescue.yaml).

    ``base``: a configuration already loaded (from the base branch, with --base-ref)."""
    import dataclasses

    from .config import load_config

    cfg = base if base is not None else load_config(ctx.obj.get("config"))
    dbt = cfg.dbt
    if project_dir is not None:
        # As dbt does: a profiles.yml beside dbt_project.yml is used unless --profiles-dir says otherwise.
        beside = project_dir if (project_dir / "profiles.yml").is_file() else dbt.profiles_dir
        dbt = dataclasses.replace(dbt, project_dir=project_dir, profiles_dir=beside)
    if profiles_dir is not None:
        dbt = dataclasses.replace(dbt, profiles_dir=profiles_dir)
    if target is not None:
        dbt = dataclasses.replace(dbt, target=target)
    if manifest is not None:
        dbt = dataclasses.replace(dbt, manifest=manifest)
    if state is not None:
        dbt = dataclasses.replace(dbt, state=state)
    return dataclasses.replace(cfg, dbt=dbt)


def dbt_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by commands that resolve selections (as in dbt)."""
    opts = [
        click.option("--project-dir", type=click.Path(path_type=Path),
                     help="dbt project folder (overrides rescue.yaml)."),
        click.option("--profiles-dir", type=click.Path(path_type=Path), help="Folder holding profiles.yml."),
        click.option("--target", help="dbt target used for parsing."),
        click.option("--manifest", type=click.Path(path_type=Path),
                     help="Resolve against this manifest.json(.gz) instead of parsing the project."),
        click.option("--state", type=click.Path(path_type=Path),
                     help="Folder with a state manifest.json for state: selectors."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Path of rescue.yaml (default: nearest one upwards from here).")
@click.version_option(package_name="rescue-runner")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Declarative, reviewed and automatic rescue reruns of dbt models.

    \b
    Example:
      rescue validate rescues/            # CI: check every request
      rescue validate --format markdown rescues/2026-11-23-fix-orders.yaml
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path


def _instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date-time with offset (``2026-11-23T22:00:00+01:00``, ``...Z``) as UTC."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 date-time") from None
    if at.tzinfo is None:
        raise click.BadParameter(f"'{value}' has no offset: add Z for UTC or +HH:MM")
    return at.astimezone(UTC)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--base-ref", metavar="REF",
              help="Take rescue.yaml (configuration and policy) from this git ref, e.g. origin/main, "
                   "so a pull request is judged by the protected branch's policy.")
@click.option("--now", "now", metavar="DATETIME", callback=_instant,
              help="Judge time rules (expiry, windows) as of this instant, e.g. 2026-11-24T22:00:00+01:00.")
@dbt_options
@click.pass_context
def validate(ctx: click.Context, paths: tuple[Path, ...], fmt: str, base_ref: str | None,
             now: datetime | None, **dbt_opts: Any) -> None:
    """Check request files: strict YAML, schema, dbt-resolved selection, policy rules.

    With no PATH, every *.yaml in the requests folder (rescues/) is checked.
    Exit 0 when all are valid, 1 when any has an error finding, 2 on usage or
    environment errors.

    \b
    Example:
      rescue validate rescues/
      rescue validate --manifest target/manifest.json --format github rescues/
      rescue validate --base-ref origin/main --format markdown rescues/   # CI on a pull request
    """
    from . import app
    from .reporting.validation import RENDERERS

    base: Any = None
    config_findings: list[Any] = []
    if base_ref is not None:
        from .trusted import load_base_config

        base, config_findings = load_base_config(base_ref, ctx.obj.get("config"))
    cfg = _load_config(ctx, base=base, **dbt_opts)
    report = app.validate(list(paths), cfg, now=now, config_findings=config_findings)
    click.echo(RENDERERS[fmt](report), nl=False)
    ctx.exit(0 if report.ok else 1)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(("text", "json", "markdown")), default="text",
              show_default=True)
@dbt_options
@click.pass_context
def plan(ctx: click.Context, path: Path, fmt: str, **dbt_opts: Any) -> None:
    """Show the batches a request would run: lineage order, estimates, fingerprint.

    Markdown adds a Gantt chart and the lineage coloured by batch (Mermaid),
    which GitHub and GitLab render in PR comments.

    \b
    Example:
      rescue plan rescues/2026-11-23-int-orders-hotfix.yaml
      rescue plan --format json rescues/2026-11-23-int-orders-hotfix.yaml
    """
    from . import app
    from .reporting.plan import PLAN_RENDERERS
    from .reporting.validation import render_text

    cfg = _load_config(ctx, **dbt_opts)
    report = app.validate([path], cfg)
    if not path.is_file():
        raise RescueError(f"{path}: not a request file", hint="rescue plan takes one request file")
    r = report.requests[0]
    if r.plan is None or report.graph is None or not r.ok:
        click.echo(render_text(report), err=True, nl=False)
        ctx.exit(1)
    assert r.plan is not None and report.graph is not None
    click.echo(PLAN_RENDERERS[fmt](r.plan, report.graph), nl=False)


def _crash_log(exc: BaseException) -> Path:
    log_dir = Path(".rescue") / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"crash-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        return path
    except OSError:
        return Path("(could not write a crash log)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: the one boundary that turns exceptions into exit codes."""
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of raising.
        rv = cli.main(args=argv, prog_name="rescue", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 2
    except RescueError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as e:  # the last resort: one line, details on disk
        where = _crash_log(e)
        click.echo(f"internal error: {type(e).__name__}: {e} (details in {where})", err=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Console-script wrapper (setuptools expects a callable whose return is the exit status)."""
    sys.exit(main())
