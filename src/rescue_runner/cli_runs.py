"""The runner's commands: ``rescue apply``, ``status``, ``log``, ``retry``, ``cancel``, ``close``
(registered by ``cli.py``). Request ids may be given by a unique prefix and complete in the shell.

Thin like the rest of the CLI: parse options, call ``rescue_runner.operate``, render,
return an exit code. Exit codes: 0 ok (also "nothing to do" and "busy"), 1 when this pass
ended a request failed or needing an operator, 2 on usage, configuration or environment errors.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .cli_options import format_option, instant
from .errors import RescueError
from .redact import redact
from .reporting.runs import LOG_RENDERERS, STATUS_RENDERERS

NOW_ENV = "RESCUE_NOW"
ENV_ENV = "RESCUE_ENV"


def _complete_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from . import operate

    return operate.complete_ids(_config(ctx), Path.cwd(), incomplete)


def _config(ctx: click.Context) -> Path | None:
    obj = ctx.find_root().obj or {}
    value = obj.get("config")
    return Path(value) if value is not None else None


def _legacy_env(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        click.echo("warning: --env is deprecated here: use --lock-env (`rescue deploy --env` sets the "
                   "worker's environment variables, a different thing)", err=True)
        ctx.meta["rescue_lock_env"] = value


def _env_option(f: Any) -> Any:
    f = click.option("--env", "legacy_env", hidden=True, expose_value=False, callback=_legacy_env,
                     help="Deprecated alias of --lock-env.")(f)
    return click.option(
        "--lock-env", "env", envvar=ENV_ENV, default="default", show_default=True,
        help=f"Environment whose runner lock to take (refs/rescue-locks/<name>); env {ENV_ENV}.")(f)


def _lock_env(ctx: click.Context, env: str) -> str:
    return str(ctx.meta.get("rescue_lock_env", env))
_now_option = click.option("--now", "now", callback=instant, metavar="DATETIME",
                           help="Judge as of this instant (drills; read-only).")
_apply_now_option = click.option(
    "--now", "now", callback=instant, metavar="DATETIME",
    help="With --dry-run only: what a pass would do at this instant (windows, pauses). A real pass "
         "always runs on this machine's clock.")


def _test_clock(now: datetime | None) -> datetime | None:
    """``--now``, else the RESCUE_NOW test hook (tests and drills on a throwaway repository only)."""
    if now is not None:
        return now
    value = os.environ.get(NOW_ENV, "").strip()
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RescueError(f"{NOW_ENV}={value!r} is not an ISO 8601 date-time with offset") from None
    if at.tzinfo is None:
        raise RescueError(f"{NOW_ENV}={value!r} has no offset: add Z for UTC or +HH:MM")
    click.echo(f"warning: {NOW_ENV} is set: the runner's clock starts at {value} (a test hook; never set "
               "it in production: events get these times)", err=True)
    return at


@click.command()
@click.option("--wait", is_flag=True, help="Keep going until nothing is runnable (runs in flight, pauses, "
                                           "a busy queue); stop when only closed windows remain.")
@click.option("--dry-run", is_flag=True, help="Print the decisions; take no lock, record and submit nothing.")
@_apply_now_option
@_env_option
@click.option("--poll", "poll", type=click.FloatRange(0.2, 3600), default=5.0, show_default=True,
              help="Seconds between passes with --wait.")
@click.option("--timeout", type=click.FloatRange(1), default=None,
              help="With --wait: give up after this many seconds (the lock is released; state stays in git).")
@click.option("--lease", "lease", type=click.FloatRange(5, 3600), default=600.0, show_default=True,
              help="Seconds the runner lock is valid without renewal.")
@click.option("-v", "--verbose", is_flag=True,
              help="Embedded mode: show dbt's output here instead of only in the log file.")
@click.pass_context
def apply(ctx: click.Context, wait: bool, dry_run: bool, now: datetime | None, env: str, poll: float,
          timeout: float | None, lease: float, verbose: bool) -> None:
    """Apply approved requests: one reconcile pass (cron), batch by batch, recorded in git.

    Approved = on the protected branch (fetched; never the working tree), re-validated now
    with that branch's rescue.yaml, plan fingerprint unchanged since first validated.
    Requests run by priority, then merge order; a batch is submitted only when its window
    is open, the queue has room and the previous batch completed (plus its pause).

    \b
    Example (cron, every 5 minutes):
      rescue apply
      rescue apply --dry-run
      rescue apply --wait --timeout 3600
    """
    from . import operate

    if now is not None and not dry_run:
        raise click.UsageError("--now only with --dry-run: a real pass runs on this machine's clock "
                               "(it records times in the audit trail and takes the lock by real time)")
    now = _test_clock(now)
    log = _quiet_embedded(verbose)
    report = operate.apply(_config(ctx), Path.cwd(), wait=wait, dry_run=dry_run, now=now,
                           env=_lock_env(ctx, env), lease_seconds=lease, poll_seconds=poll, timeout=timeout,
                           say=_say)
    if log is not None and report.status != "nothing":
        _say(f"dbt output: {log}; each run's dbt.log, run_results.json and summary.json: "
             f"{operate.runs_dir(_config(ctx), Path.cwd())}/<flow run id>/")
    ctx.exit(1 if report.problems else 0)


def _say(line: str) -> None:
    from . import quiet

    click.echo(redact(line), file=quiet.terminal())


def _quiet_embedded(verbose: bool) -> Path | None:
    """Embedded mode (no PREFECT_API_URL) runs dbt here: its output goes to a file."""
    from . import quiet
    from .execution import prefect_api_url

    quiet.telemetry_off()
    if verbose or prefect_api_url() is not None:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return quiet.capture(Path(".rescue") / "logs" / f"apply-{stamp}.log")


@click.command()
@click.argument("request_id", required=False, shell_complete=_complete_id)
@click.option("--format", "fmt", type=format_option(STATUS_RENDERERS), default="text", show_default=True,
              help="markdown: the overview for a pinned issue or a CI job summary.")
@_now_option
@click.pass_context
def status(ctx: click.Context, request_id: str | None, fmt: str, now: datetime | None) -> None:
    """Where each request is: state, reason, batches and flow runs (from git; Prefect not needed).

    \b
    Example:
      rescue status
      rescue status 2026-11-23-int-orders-hotfix
      rescue status --format json
      rescue status --format markdown >> "$GITHUB_STEP_SUMMARY"
    """
    from . import operate

    report = operate.status(_config(ctx), Path.cwd(), request_id, now=now)
    click.echo(redact(STATUS_RENDERERS[fmt](report)), nl=False)


@click.command()
@click.argument("request_id", required=False, shell_complete=_complete_id)
@click.option("--format", "fmt", type=format_option(LOG_RENDERERS), default="text", show_default=True)
@click.pass_context
def log(ctx: click.Context, request_id: str | None, fmt: str) -> None:
    """The audit trail from the audit branch, newest last.

    \b
    Example:
      rescue log
      rescue log 2026-11-23-int-orders-hotfix --format json
    """
    from . import operate

    click.echo(redact(LOG_RENDERERS[fmt](operate.log(_config(ctx), Path.cwd(), request_id))), nl=False)


@click.command()
@click.argument("request_id", shell_complete=_complete_id)
@click.option("--by", required=True, help="Who decides (recorded in the audit trail).")
@click.option("--reason", required=True, help="Why it is safe to go on (recorded in the audit trail).")
@click.option("--accept-plan", is_flag=True,
              help="Approve the plan as it is now (after plan drift or an untrusted trail); it runs whole.")
@_env_option
@click.pass_context
def retry(ctx: click.Context, request_id: str, by: str, reason: str, accept_plan: bool, env: str) -> None:
    """Operator: reopen a failed or needs-operator request with the next attempt number.

    Completed batches stay done; the next `rescue apply` re-validates the request and
    submits its first unfinished batch as a new flow run (a new idempotency key).
    With --accept-plan, the plan derived at the next pass is recorded as the approved one
    (who and why are on the record) and runs from its first batch.

    \b
    Examples:
      rescue retry 2026-11-23-int-orders-hotfix --by alice --reason "worker crash, warehouse checked"
      rescue retry 2026-11-23-int-orders-hotfix --accept-plan --by alice --reason "new model reviewed in #42"
    """
    from . import operate

    event = operate.retry(_config(ctx), Path.cwd(), request_id, by=by, reason=reason,
                          env=_lock_env(ctx, env), now=_test_clock(None), accept_plan=accept_plan)
    what = "; the plan at the next pass is approved" if accept_plan else ""
    click.echo(f"{event.request_id}: attempt {event.fields['attempt']} opened by {event.fields['by']}{what}")


@click.command()
@click.argument("request_id", shell_complete=_complete_id)
@click.option("--by", required=True, help="Who decides (recorded in the audit trail).")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option("--timeout", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
              help="Seconds to wait for the flow run to reach CANCELLED.")
@_env_option
@click.pass_context
def cancel(ctx: click.Context, request_id: str, by: str, reason: str, timeout: float, env: str) -> None:
    """Operator: stop a request that has not finished, and cancel its running flow run.

    The flow run is cancelled through the Prefect API (its worker stops the process); the
    request ends `cancelled` and is never picked up again. Completed batches stay in the
    warehouse: a cancelled batch may have rebuilt some of its models.

    \b
    Example:
      rescue cancel 2026-11-23-int-orders-hotfix --by ana --reason "wrong selection, replaced by PR 812"
    """
    from . import operate

    event = operate.cancel(_config(ctx), Path.cwd(), request_id, by=by, reason=reason,
                           env=_lock_env(ctx, env), now=_test_clock(None), timeout=timeout,
                           say=lambda line: click.echo(line))
    f = event.fields
    run = f" (flow run {f['flow_run_id']}: {str(f.get('run_state')).lower()})" if f.get("flow_run_id") else ""
    click.echo(f"{event.request_id}: cancelled by {f['by']}{run}")


@click.command()
@click.argument("request_id", shell_complete=_complete_id)
@click.option("--by", required=True, help="Who decides (recorded in the audit trail).")
@click.option("--reason", required=True, help="Why it is closed (recorded in the audit trail).")
@_env_option
@click.pass_context
def close(ctx: click.Context, request_id: str, by: str, reason: str, env: str) -> None:
    """Operator: close a failed or needs-operator request for good (state `closed`).

    It is no longer an open problem in `rescue status`, can never be retried, and the audit
    trail keeps why and by whom.

    \b
    Example:
      rescue close 2026-11-23-int-orders-hotfix --by ana --reason "rebuilt by hand, see DATA-1412"
    """
    from . import operate

    event = operate.close(_config(ctx), Path.cwd(), request_id, by=by, reason=reason, env=_lock_env(ctx, env),
                          now=_test_clock(None))
    click.echo(f"{event.request_id}: closed by {event.fields['by']}")


@click.command()
@click.option("--embedded", is_flag=True,
              help="Batches run in-process on purpose (no PREFECT_API_URL): skip the server checks.")
@click.pass_context
def doctor(ctx: click.Context, embedded: bool) -> None:
    """Check the setup as the runner and the worker will see it; one line per problem with its fix.

    rescue.yaml; the Prefect API (set, reachable), the deployment, its queue and heartbeats, a
    worker online; the dbt profile as the worker resolves it (relative DuckDB paths); the
    protected branch and a push to the audit branch; the alert webhook. Exit 1 when any problem.

    \b
    Example:
      rescue doctor
      rescue doctor --embedded     # batches run in-process on purpose
    """
    from .doctor import doctor as run_doctor

    report = run_doctor(_config(ctx), Path.cwd(), embedded=embedded)
    for problem in report.problems:
        click.echo(problem.line())
    if report.ok:
        click.echo(f"ok: {', '.join(report.checked)}")
    ctx.exit(0 if report.ok else 1)


COMMANDS = (apply, status, log, retry, cancel, close, doctor)


def register(group: click.Group) -> None:
    """Add the runner's commands to the ``rescue`` group."""
    for command in COMMANDS:
        group.add_command(command)
