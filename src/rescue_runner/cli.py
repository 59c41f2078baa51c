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

from .cli_options import format_option, instant
from .errors import RescueError
from .redact import redact, register_url
from .reporting.plan import PLAN_RENDERERS
from .reporting.validation import RENDERERS


def _load_config(ctx: click.Context, project_dir: Path | None, profiles_dir: Path | None,
                 target: str | None, manifest: Path | str | None, state: Path | str | None,
                 base: Any = None) -> Any:
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


def _location(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | str | None:
    """A storage URL stays a string (storage.py reads it); anything else is a local path."""
    from .storage import is_url

    if value is None or is_url(value):
        return value
    return Path(value)


def dbt_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by commands that resolve selections (as in dbt)."""
    opts = [
        click.option("--project-dir", type=click.Path(path_type=Path),
                     help="dbt project folder (overrides rescue.yaml)."),
        click.option("--profiles-dir", type=click.Path(path_type=Path), help="Folder holding profiles.yml."),
        click.option("--target", help="dbt target used for parsing."),
        click.option("--manifest", callback=_location, metavar="PATH|URL",
                     help="Resolve against this manifest.json(.gz) instead of parsing the project "
                          "(a path or a storage URL such as s3://bucket/prod/manifest.json)."),
        click.option("--state", callback=_location, metavar="PATH|URL",
                     help="Folder with a state manifest.json for state: selectors (a path or a URL)."),
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


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=format_option(RENDERERS), default="text", show_default=True)
@click.option("--base-ref", metavar="REF",
              help="Take rescue.yaml (configuration and policy) from this git ref, e.g. origin/main, "
                   "so a pull request is judged by the protected branch's policy.")
@click.option("--now", "now", metavar="DATETIME", callback=instant,
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

    try:
        base: Any = None
        config_findings: list[Any] = []
        if base_ref is not None:
            from .trusted import load_base_config

            base, config_findings = load_base_config(base_ref, ctx.obj.get("config"))
        cfg = _load_config(ctx, base=base, **dbt_opts)
        _refuse_empty_ci_run(cfg, paths)
        report = app.validate(list(paths), cfg, now=now, config_findings=config_findings,
                              finished=app.finished_requests(cfg))
    except RescueError as exc:
        if fmt != "github":
            raise
        from .reporting.validation import gh_plain  # an error text may hold a hostile file name

        raise RescueError(gh_plain(exc.message), hint=gh_plain(exc.hint) if exc.hint else None) from exc
    click.echo(RENDERERS[fmt](report), nl=False)
    ctx.exit(0 if report.ok else 1)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=format_option(PLAN_RENDERERS), default="text",
              show_default=True)
@dbt_options
@click.pass_context
def plan(ctx: click.Context, path: Path, fmt: str, **dbt_opts: Any) -> None:
    """Show the batches a request would run: lineage order, estimates, fingerprint, and when
    each is expected to start (its window, pauses and, with PREFECT_API_URL, the queue forecast).

    Markdown adds a Gantt chart and the lineage coloured by batch (Mermaid),
    which GitHub and GitLab render in PR comments.

    \b
    Example:
      rescue plan rescues/2026-11-23-int-orders-hotfix.yaml
      rescue plan --format json rescues/2026-11-23-int-orders-hotfix.yaml
    """
    from . import app
    from .reporting.validation import render_text

    cfg = _load_config(ctx, **dbt_opts)
    report = app.validate([path], cfg)
    if not path.is_file():
        raise RescueError(f"{path}: not a request file", hint="rescue plan takes one request file")
    r = report.requests[0]
    if r.plan is None or report.graph is None or not r.ok:
        click.echo(render_text(report), err=True, nl=False)
        ctx.exit(1)
    assert r.plan is not None and report.graph is not None and r.request is not None
    from datetime import UTC, datetime

    from .execution import prefect_api_url
    from .reporting.schedule import with_schedule

    now = datetime.now(UTC)
    starts, basis = app.plan_schedule(cfg, r, report.graph, now=now, api_url=prefect_api_url())
    zone = r.request.window.timezone if r.request.window else None
    # Batch lines show the window-based start (the request's zone); the schedule adds the queue forecast.
    rendered = PLAN_RENDERERS[fmt](r.plan, report.graph, r.timeline if fmt != "json" else None)
    click.echo(with_schedule(fmt, rendered, starts, basis, zone, now), nl=False)


@cli.command()
@click.argument("which", type=click.Choice(("request", "config")), required=False)
@click.option("--write", is_flag=True,
              help="Write both schemas into the repository (schema/ beside rescue.yaml), where the "
                   "modelines of rescue.yaml and the requests point.")
@click.option("--dir", "folder", default="schema", show_default=True,
              help="Folder for --write, relative to the repository root.")
@click.pass_context
def schema(ctx: click.Context, which: str | None, write: bool, folder: str) -> None:
    """Print a JSON Schema (request or config), or write both into the repository.

    Editors with the YAML language server validate and complete from the copies a
    modeline points at (`# yaml-language-server: $schema=schema/rescue-config.v1.json`).
    Re-run --write after upgrading rescue-runner; unchanged files stay as they are.

    \b
    Example:
      rescue schema --write
      rescue schema request > request.schema.json
    """
    from . import scaffold
    from .config import find_config

    if not write:
        if which is None:
            raise click.UsageError("name a schema (request or config) or pass --write")
        name = f"rescue-{which}.v1.json"
        click.echo(scaffold.schema_files()[f"{scaffold.SCHEMA_DIR}/{name}"], nl=False)
        return
    config_path = ctx.obj.get("config") or find_config(Path.cwd())
    root = Path(config_path).resolve().parent if config_path else Path.cwd()
    written = scaffold.write_files(root, scaffold.schema_files(folder), force=True)
    for rel in written:
        click.echo(f"wrote {rel}")


@cli.command()
@click.pass_context
def requirements(ctx: click.Context) -> None:
    """Print what CI installs beside rescue-runner, one pip requirement a line.

    The dbt adapter named by `dbt.adapter` in rescue.yaml (dbt-<adapter>, with the tested
    range for duckdb and postgres) and the filesystem packages of the storage URLs in use
    (s3fs, gcsfs, adlfs). The CI templates run it on the trusted branch's rescue.yaml.

    \b
    Example:
      rescue requirements > rescue-requirements.txt
      python -m pip install "$RESCUE_RUNNER_SPEC" -r rescue-requirements.txt
    """
    from . import scaffold

    for req in scaffold.ci_requirements(_load_config(ctx, None, None, None, None, None)):
        click.echo(req)


@cli.command()
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              help="dbt project folder (default: the one holding dbt_project.yml, found from here).")
@click.option("--ci", "ci", type=click.Choice(("github", "gitlab", "none")), multiple=True,
              default=("github",), show_default=True, help="CI files to write; repeat for several.")
@click.option("--timezone", help="IANA time zone of the starter quiet window (default: this machine's).")
@click.option("--branch", help="Protected branch whose requests are approved (default: origin's default).")
@click.option("--pip-spec", help="What CI installs (default: rescue-runner==<this version>).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(project_dir: Path | None, ci: tuple[str, ...], timezone: str | None, branch: str | None,
         pip_spec: str | None, force: bool) -> None:
    """Set up rescue-runner in an existing dbt repository (run it at the repository root).

    Writes a commented rescue.yaml (dbt project found by its dbt_project.yml, Prefect pool,
    queue and deployment, audit branch, a starter policy), rescues/README.md and CI files.
    Refuses to overwrite existing files (exit 2) unless --force.

    \b
    Example:
      rescue init
      rescue init --ci github --ci gitlab --timezone Europe/Berlin
    """
    from . import scaffold

    root = Path.cwd()
    project = scaffold.detect_project(root, project_dir)
    files = scaffold.plan_init(
        root, project, ci=[c for c in ci if c != "none"], timezone=timezone or scaffold.local_timezone(),
        branch=branch or scaffold.default_branch(root), pip_spec=pip_spec or scaffold.package_spec())
    written = scaffold.write_files(root, files, force=force)
    for rel in written:
        click.echo(f"wrote {rel}")
    click.echo("\nNext steps:")
    for step in scaffold.next_steps(written):
        click.echo(f"  - {step}")


def _refuse_empty_ci_run(cfg: Any, paths: tuple[Path, ...]) -> None:
    """In CI, no rescue.yaml and no request to check is a misconfigured job, not a pass."""
    import os

    if paths or cfg.source is not None or os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        return
    if cfg.requests_dir.is_dir() and any(cfg.requests_dir.glob("*.yaml")):
        return
    raise RescueError(f"no rescue.yaml found from {Path.cwd()} upwards and no request file in "
                      f"{cfg.requests_dir}: nothing was checked",
                      hint="run CI at the repository root, or pass --config PATH and the request "
                           "files or folder (e.g. `rescue validate rescues/`)")


def _changed_selection(cfg: Any, changed: str, get_dbt: Callable[[], Any],
                       reason: str | None) -> tuple[str, str | None]:
    """``--changed BASE..HEAD``: the changed models with their downstream, and a default reason."""
    from . import prhint

    try:
        base, head = prhint.parse_range(changed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--changed") from None
    paths = prhint.changed_files(cfg.root, base, head)
    try:
        rel = cfg.dbt.project_dir.resolve().relative_to(cfg.root.resolve()).as_posix()
    except ValueError:
        rel = ""
    uids, _ = prhint.map_paths(paths, get_dbt(), "" if rel == "." else rel)
    if not uids:
        raise RescueError(f"no dbt model changed in {changed}", hint="give --select instead")
    names = [u.rsplit(".", 1)[-1] for u in uids]
    why = reason or f"{', '.join(names)} changed in {changed}; rebuild the production tables built from them"
    return " ".join(f"{n}+" for n in names), why


def _ask(interactive: bool, given: Any, prompt: str, check: Callable[[str], Any], *,
         required: bool, default: str = "", option: str = "") -> Any:
    """A flag's value checked, else a prompt that repeats until the answer passes ``check``."""
    def proc(value: str) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    if given is not None:
        try:
            return check(given)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    if interactive:
        return click.prompt(prompt, default=default, show_default=bool(default), value_proc=proc)
    if required:
        raise click.UsageError(f"{option} is required with --yes or without a terminal")
    return None


@cli.command()
@click.option("--base-ref", required=True, metavar="REF", help="The base commit of the pull request.")
@click.option("--head-ref", default="HEAD", show_default=True, metavar="REF",
              help="The pull request's commit.")
@click.option("--repo", "repo", type=click.Path(path_type=Path, file_okay=False),
              help="The git repository holding both commits (default: this one). Read as data only.")
@click.option("--format", "fmt", type=click.Choice(("text", "markdown")), default="text", show_default=True)
@dbt_options
@click.pass_context
def changes(ctx: click.Context, base_ref: str, head_ref: str, repo: Path | None, fmt: str,
            **dbt_opts: Any) -> None:
    """Which production tables a pull request's model changes leave stale after the merge.

    Maps the files changed between BASE and HEAD to models of THIS checkout's dbt project
    (run it in the base checkout: nothing of the pull request is parsed or run), adds every
    table built from them, and says whether a request in the pull request rebuilds them or
    which request file to add. Markdown is a PR comment section.

    \b
    Example (CI, in the base checkout):
      rescue changes --base-ref "$BASE_SHA" --head-ref "$HEAD_SHA" --repo ../head --format markdown
    """
    from datetime import date

    from . import app, prhint

    cfg = _load_config(ctx, **dbt_opts)
    result = prhint.hint(cfg, app.open_dbt(cfg), repo or Path.cwd(), base_ref, head_ref,
                         day=date.today().isoformat())
    click.echo(prhint.render_markdown(result) if fmt == "markdown" else prhint.render_text(result), nl=False)


@cli.command()
@click.option("--select", help="dbt selectors, space separated, e.g. 'int_orders+'.")
@click.option("--exclude", help="dbt selectors to leave out.")
@click.option("--reason", help="Why the rescue is needed: what broke, what the rerun fixes.")
@click.option("--ticket", help="Issue key or URL, e.g. DATA-1412.")
@click.option("--full-refresh/--no-full-refresh", default=None,
              help="Rebuild incremental models from scratch.")
@click.option("--max-models", type=click.IntRange(1, 10000), help="At most this many models per batch.")
@click.option("--window-daily", metavar="HH:MM-HH:MM",
              help="Run only in this daily window (needs --timezone).")
@click.option("--timezone", help="IANA time zone of --window-daily, e.g. Europe/Berlin.")
@click.option("--expires", metavar="YYYY-MM-DD", help="Do not run after this day (UTC).")
@click.option("--requested-by", help="Who asks (default: git config user.name and user.email).")
@click.option("--slug", help="File name part after the date (default: from the first selector).")
@click.option("--changed", metavar="BASE..HEAD",
              help="Select the models changed in this commit range and everything downstream "
                   "(e.g. origin/main..HEAD).")
@click.option("--yes", "-y", is_flag=True, help="Never prompt: use the flags, fail on what is missing.")
@dbt_options
@click.pass_context
def new(ctx: click.Context, select: str | None, exclude: str | None, reason: str | None,
        ticket: str | None, full_refresh: bool | None, max_models: int | None, window_daily: str | None,
        timezone: str | None, expires: str | None, requested_by: str | None, slug: str | None,
        changed: str | None, yes: bool, **dbt_opts: Any) -> None:
    """Write a new request file rescues/<date>-<slug>.yaml, validate it and show its plan.

    Asks for what the flags do not give (on a terminal, unless --yes); answers are checked as
    you type them. requested_by comes from git config. The selection is resolved with dbt before
    anything is written: one that matches no model is asked again (or, with --yes, exit 1 and
    nothing written), with the nearest model names. Exit 1 when the written request is otherwise
    invalid: the file is kept so you can edit it and run `rescue validate` again.

    \b
    Example:
      rescue new
      rescue new --select int_orders+ --reason "int_orders double-counted refunds" \\
        --ticket DATA-1412 --max-models 20 --yes
      rescue new --select mart_revenue --full-refresh --window-daily 01:00-05:00 \\
        --timezone Europe/Berlin --reason "Revenue logic changed for historic orders" --yes
    """
    from datetime import date

    from . import app, drafting
    from .discovery import display_path
    from .policies import policy_from_config
    from .reporting.plan import render_plan_text
    from .reporting.validation import render_text

    cfg = _load_config(ctx, **dbt_opts)
    rules = policy_from_config(cfg.policy).request
    tty = not yes and sys.stdin.isatty()
    ex = drafting.check_selectors_text(exclude, "exclude", required=False) if exclude else ()
    dbt: list[Any] = []  # loaded once, on the first selection to check

    def get_dbt() -> Any:
        if not dbt:
            dbt.append(app.open_dbt(cfg))
        return dbt[0]

    def selection_findings(parts: tuple[str, ...]) -> list[Any]:
        return app.check_selection(get_dbt(), parts, ex)

    def check_select(value: str) -> tuple[str, ...]:
        """On a terminal, a selection that matches nothing is refused on the spot (re-asked)."""
        parts = drafting.check_selectors_text(value)
        if tty:
            findings = selection_findings(parts)
            blocking = [f for f in findings if f.blocking]
            if blocking:
                raise ValueError(f"{blocking[0].code} {blocking[0].message}")
            for f in findings:
                click.echo(f"warning {f.code} {f.message}", err=True)
        return parts

    if changed is not None and select is None:
        select, reason = _changed_selection(cfg, changed, get_dbt, reason)
    sel = _ask(tty, select, "Models to rescue (dbt selectors)", check_select, required=True,
               option="--select")
    why = _ask(tty, reason, "Reason (what broke, what the rerun fixes)",
               lambda v: drafting.check_reason(v, rules.reason_min_length), required=True, option="--reason")
    tic = _ask(tty, ticket, "Ticket (issue key or URL" + (")" if rules.ticket_required else ", empty: none)"),
               lambda v: drafting.check_ticket(v, required=rules.ticket_required),
               required=rules.ticket_required, option="--ticket")
    if full_refresh is None:
        full_refresh = tty and click.confirm("Full refresh (rebuild incremental models from scratch)?",
                                             default=False)
    if max_models is None and tty:
        max_models = _ask(tty, None, "At most how many models per batch (empty: no split)",
                          drafting.check_max_models, required=False)
    daily = _ask(tty and window_daily is None, window_daily,
                 "Daily window HH:MM-HH:MM (empty: any time)",
                 lambda v: drafting.check_daily_window(v) if v.strip() else None, required=False,
                 option="--window-daily")
    zone = None
    if daily is not None or timezone is not None:
        zone = _ask(tty, timezone, "Time zone of the window (IANA name, e.g. Europe/Berlin)",
                    drafting.check_timezone, required=daily is not None, option="--timezone")
    who = requested_by if requested_by is not None else drafting.git_identity(Path.cwd())
    who = _ask(tty, who, "Requested by", drafting.check_requested_by, required=True,
               option="--requested-by")
    draft = drafting.Draft(
        select=sel, reason=why, requested_by=who, ticket=tic, exclude=ex, full_refresh=bool(full_refresh),
        max_models=max_models, window_daily=daily, timezone=zone,
        expires=_ask(False, expires, "", drafting.check_expires, required=False, option="--expires"))
    if not tty:  # flags: checked with dbt once every cheap check passed
        blocking = [f for f in selection_findings(sel) if f.blocking]
        if blocking:
            for f in blocking:
                click.echo(f"--select: {f.severity.value} {f.code} {f.message}", err=True)
            click.echo("nothing was written: fix --select and run `rescue new` again", err=True)
            ctx.exit(1)
    path = drafting.request_path(cfg.requests_dir, date.today(), slug or drafting.default_slug(draft))
    text = drafting.render_request(draft, drafting.schema_ref(path, cfg.root))
    shown = display_path(path, Path.cwd())
    if tty:
        click.echo(f"\n{shown}:\n{text}")
        if not click.confirm("Write it?", default=True):
            raise click.Abort()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {shown}")
    report = app.validate([path], cfg, dbt=dbt[0] if dbt else None)
    r = report.requests[0]
    if not r.ok:
        click.echo(render_text(report), nl=False)
        click.echo(f"{shown} has errors; the file is kept: edit it, then run `rescue validate {shown}`",
                   err=True)
        ctx.exit(1)
    for f in r.findings:  # warnings such as RR205 are worth seeing before the PR is opened
        click.echo(f"{shown}:{f.line}: {f.severity.value} {f.code} {f.message}")
    if r.plan is not None and report.graph is not None:
        click.echo(render_plan_text(r.plan, report.graph, r.timeline), nl=False)
    else:
        click.echo(render_text(report), nl=False)
    click.echo(f"Next: commit {shown} and open a pull request; CI comments the plan.")


# The runner's commands (apply, status, log, retry) live in their own module.
from .cli_runs import register as _register_runner_commands  # noqa: E402

_register_runner_commands(cli)


def _job_env(values: tuple[str, ...]) -> dict[str, str]:
    import os

    env: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not name.isidentifier():
            raise RescueError(f"--env {item!r}: expected NAME or NAME=VALUE")
        if not sep:
            if name not in os.environ:
                raise RescueError(f"--env {name}: not set in this environment",
                                  hint=f"export {name}=... first, or pass --env {name}=VALUE")
            value = os.environ[name]
        env[name] = value
    return env


@cli.command()
@click.option("--env", "env", multiple=True, metavar="NAME[=VALUE]",
              help="Environment for the worker's flow runs (NAME alone copies it from here), "
                   "e.g. the warehouse path or profile secrets. Repeatable.")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@click.option("--check", is_flag=True, help="Change nothing: read the deployment's parameter schema and say "
                                            "which request features it can carry (exit 1 if the mapping "
                                            "does not fit).")
@click.pass_context
def deploy(ctx: click.Context, env: tuple[str, ...], fmt: str, check: bool) -> None:
    """Create or update the work pool, the `dbt` queue and the `dbt_rerun` deployment.

    Idempotent: run it after every change to rescue.yaml's prefect section. Needs
    PREFECT_API_URL; without a server, batches run in-process and need no deployment.
    With prefect.mapping (your own deployment), use --check: it is never changed.

    \b
    Example:
      export PREFECT_API_URL=http://127.0.0.1:4200/api
      rescue deploy --env LAKEHOUSE_DB
      rescue deploy --check
    """
    import json

    from . import execution
    from .config import load_config

    cfg = load_config(ctx.obj.get("config"))
    if check:
        result = execution.check_deployment(cfg)
        click.echo(json.dumps(result.to_dict(), indent=2) if fmt == "json" else "\n".join(result.lines()))
        ctx.exit(0 if result.ok else 1)
    job_env = _job_env(env)
    report = execution.deploy(cfg, job_variables={"env": job_env} if job_env else None)
    if fmt == "json":
        click.echo(redact(json.dumps(report.to_dict(), indent=2)))
        return
    for note in report.notes:
        click.echo(note)
    click.echo(f"deployment {report.deployment} ({report.deployment_id}) on "
               f"{report.work_pool}/{report.work_queue}, {report.queue_concurrency} slot(s)")


def _register_url_secrets() -> None:
    """Credentials in configured URLs are masked in everything this process prints or stores."""
    import os

    for name in ("PREFECT_API_URL", "RESCUE_WEBHOOK_URL"):
        register_url(os.environ.get(name))


def _crash_log(exc: BaseException) -> Path:
    log_dir = Path(".rescue") / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"crash-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.log"
        path.write_text(redact("".join(traceback.format_exception(exc))), encoding="utf-8")
        return path
    except OSError:
        return Path("(could not write a crash log)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: the one boundary that turns exceptions into exit codes."""
    from . import quiet

    _register_url_secrets()
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of raising.
        rv = cli.main(args=argv, prog_name="rescue", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show(file=quiet.terminal(err=True))
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", file=quiet.terminal(err=True))
        return 2
    except RescueError as e:
        click.echo(redact(f"error: {e}"), file=quiet.terminal(err=True))
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", file=quiet.terminal(err=True))
        return 130
    except Exception as e:  # the last resort: one line, details on disk
        where = _crash_log(e)
        click.echo(redact(f"internal error: {type(e).__name__}: {e} (details in {where})"),
                   file=quiet.terminal(err=True))
        return 2


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Console-script wrapper (setuptools expects a callable whose return is the exit status)."""
    sys.exit(main())
