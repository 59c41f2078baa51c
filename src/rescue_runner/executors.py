"""The runner's ``Executor`` over the execution module: a Prefect server, or embedded (in-process).

Thin on purpose: submission, idempotency keys, contention and the embedded flow run are
``execution``'s; this adds what the runner needs around them: finding a batch's run
before submitting (so a run whose submit event was lost is adopted, never resubmitted),
reading run states as ``RunView`` (a run gone from the server is ``MISSING``), and the
dbt summary counts the flow stores beside each run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import execution
from .audit import BatchRecord, RequestState
from .config import Config
from .contention import Ask, Decision
from .errors import RescueError, RunNotFound
from .model import PlannedBatch
from .reconcile import MISSING, Approved, Revalidation, RunView
from .reporting.prefect_run import RunContext, artifact_key, result_markdown, web_links

_FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
MAX_FAILED_NODES = 20


class ServerExecutor:
    """Batches become flow runs of the deployment on the server at ``api_url``."""

    mode = execution.SERVER
    lookup_before_submit = True  # a REST call; also catches a submit whose record was lost

    def __init__(self, config: Config, api_url: str) -> None:
        self.config, self.api_url = config, api_url
        self._deployment_id: str | None = None
        self._reported: set[str] = set()

    @property
    def deployment_id(self) -> str:
        if self._deployment_id is None:
            from .adapters import prefect_api

            p = self.config.prefect
            self._deployment_id = prefect_api.read_deployment(self.api_url, f"{p.flow}/{p.deployment}").id
        return self._deployment_id

    def key(self, state: RequestState, batch: PlannedBatch, attempt: int) -> str:
        return execution.idempotency_key(self.deployment_id, state.request_id, state.content_hash or "",
                                         batch.index, attempt)

    def find_run(self, state: RequestState, batch: PlannedBatch, attempt: int) -> RunView | None:
        from .adapters import prefect_api

        key = self.key(state, batch, attempt)
        for run in prefect_api.read_flow_runs_by_tag(self.api_url, execution.run_tag(state.request_id)):
            if run.idempotency_key == key:
                return self._view(run)
        return None

    def submit(self, approved: Approved, validation: Revalidation, state: RequestState, batch: PlannedBatch,
               attempt: int) -> RunView:
        sub = _submit(self.config, approved, validation, state, batch, attempt, api_url=self.api_url)
        return RunView(sub.flow_run_id, sub.state, final=(sub.state or "") in _FINAL, url=sub.url,
                       name=sub.name, idempotency_key=sub.idempotency_key, mode=self.mode, commit=sub.commit)

    def run_state(self, state: RequestState, record: BatchRecord) -> RunView | None:
        from .adapters import prefect_api

        try:
            run = prefect_api.read_flow_run(self.api_url, record.flow_run_id or "")
        except RunNotFound:  # an answer (the run is gone); unreachable is not, and propagates
            return RunView(record.flow_run_id or "", MISSING, final=True, mode=self.mode)
        return self._view(run)

    def contention(self, ask: Ask) -> Decision:
        # The queue lives in real time (heartbeats, due runs): never judge it by an injected clock
        # (the ask's window end is translated from the runner's clock, see contention.Ask).
        return execution.contention(self.config, ask=ask, api_url=self.api_url)

    def _view(self, run: Any) -> RunView:
        final = run.state_type in _FINAL
        outcome = _outcome(self.config, run.id, run.state_type) if final else {}
        if final and self.config.prefect.mapping is not None and run.id not in self._reported:
            self._reported.add(run.id)
            _attach_result(self.api_url, run)
        return RunView(run.id, run.state_type, final=final, url=execution.ui_url(self.api_url, run.id),
                       name=run.name, state_name=run.state_name, idempotency_key=run.idempotency_key,
                       mode=self.mode, started_at=getattr(run, "start_time", None),
                       commit=run.parameters.get("dbt_repo_commit"), **outcome)


class EmbeddedExecutor:
    """Batches run in this process (no PREFECT_API_URL); their runs are read back from the local
    run record (``adapters/local_runs.py``, one file per run in ``.rescue/runs-local``).

    An embedded run lives and dies with the runner that started it, and that runner records
    its end before it lets go of the lock. So a run another runner finds not final is an
    orphan of a runner that died: its outcome is unknown.
    """

    mode = execution.EMBEDDED
    # Embedded runs happen inside the lock holder, which records them before it lets go: one can
    # only exist unrecorded after a crash, and then the runner looks anyway (recovering).
    lookup_before_submit = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.home = execution.embedded_runs_home(config)

    def key(self, state: RequestState, batch: PlannedBatch, attempt: int) -> str:
        return execution.idempotency_key(execution.EMBEDDED, state.request_id, state.content_hash or "",
                                         batch.index, attempt)

    def find_run(self, state: RequestState, batch: PlannedBatch, attempt: int) -> RunView | None:
        from .adapters import local_runs

        key = self.key(state, batch, attempt)
        for run in local_runs.find_runs(self.home, execution.run_tag(state.request_id)):
            if run.idempotency_key == key:
                return self._view(run)
        return None

    def submit(self, approved: Approved, validation: Revalidation, state: RequestState, batch: PlannedBatch,
               attempt: int) -> RunView:
        sub = _submit(self.config, approved, validation, state, batch, attempt, api_url=None,
                      manifest=_parsed_manifest(validation.context.dbt))
        return RunView(sub.flow_run_id, sub.state, final=True, name=sub.name,
                       idempotency_key=sub.idempotency_key, state_name=(sub.state or "").title() or None,
                       mode=self.mode, commit=sub.commit, **_outcome(self.config, sub.flow_run_id, sub.state))

    def run_state(self, state: RequestState, record: BatchRecord) -> RunView | None:
        from .adapters import local_runs

        run = local_runs.read_run(self.home, record.flow_run_id or "")
        if run is None:
            return RunView(record.flow_run_id or "", MISSING, final=True, mode=self.mode)
        return self._view(run)

    def contention(self, ask: Ask) -> Decision:
        return execution.contention(self.config, ask=ask, api_url=None)

    def _view(self, run: Any) -> RunView:
        final = run.state_type in _FINAL
        outcome = _outcome(self.config, run.id, run.state_type) if final else {}
        return RunView(run.id, run.state_type, final=True, name=run.name, state_name=run.state_name,
                       idempotency_key=run.idempotency_key, mode=self.mode, orphaned=not final,
                       started_at=run.start_time, commit=run.parameters.get("dbt_repo_commit"), **outcome)


def _submit(config: Config, approved: Approved, validation: Revalidation, state: RequestState,
            batch: PlannedBatch, attempt: int, *, api_url: str | None,
            manifest: Any = None) -> execution.SubmittedRun:
    """One batch through ``execution.submit_batch``, the same way for both executors."""
    ctx = validation.context
    return execution.submit_batch(
        config, state.request_id, state.content_hash or "", batch, attempt, ctx.graph,
        event_time=ctx.request.event_time, verify=ctx.dbt.select, api_url=api_url, manifest=manifest,
        commit=build_commit(approved, state),
        context=run_context(config, approved, validation, state, batch, attempt))


def build_commit(approved: Approved, state: RequestState) -> str | None:
    """The commit a batch builds: the one this attempt's earlier batches built, else the protected
    branch tip this pass validated the request at (None: the repository's HEAD)."""
    return state.attempt_commit or approved.approved_sha or None


def make_executor(config: Config) -> ServerExecutor | EmbeddedExecutor:
    """Server mode with PREFECT_API_URL, embedded otherwise (as ``execution`` decides)."""
    url = execution.prefect_api_url()
    return ServerExecutor(config, url) if url else EmbeddedExecutor(config)


def _attach_result(api_url: str, run: Any) -> None:
    """A mapped deployment runs the team's own flow, which adds no result artifact: the runner adds
    a short one (final state and message) when it sees the run end. Best effort."""
    from .adapters import prefect_artifacts

    rid = next((t.split(":", 1)[1] for t in run.tags if t.startswith("rescue:")), None)
    if rid is None:
        return
    status = {"COMPLETED": "success", "FAILED": "failed", "CRASHED": "failed"}.get(run.state_type,
                                                                                  str(run.state_type).lower())
    summary = {"status": status, "error": f"{run.state_name}: {run.state_message}" if status != "success"
               and run.state_message else None}
    prefect_artifacts.attach_markdown(run.id, result_markdown(summary), key=artifact_key(rid, "result"),
                                      description="rescue batch result (recorded by the runner)",
                                      api_url=api_url)


def run_context(config: Config, approved: Approved, validation: Revalidation, state: RequestState,
                batch: PlannedBatch, attempt: int) -> RunContext:
    """What the batch's flow run shows in Prefect (tags, context artifact): from the approved request."""
    from .adapters.git import commit_message

    req = approved.request
    plan = tuple(validation.batches or state.plan)
    et = req.event_time if req is not None else None
    # The commit the batch builds (the approved tip); the pull request is named by the commit that
    # merged the request file.
    built = approved.approved_sha or approved.commit or None
    links = web_links(config.links.repository_url, request_id=state.request_id,
                      audit_branch=config.audit.branch, commit=built,
                      commit_message=commit_message(config.root, approved.commit)
                      if config.links.repository_url and approved.commit else None)
    return RunContext(
        request_id=state.request_id, batch=batch.index, batches=plan,
        reason=req.reason if req else None, requested_by=req.requested_by if req else None,
        ticket=req.ticket if req else None, commit=built, attempt=attempt,
        event_time=(et.start.isoformat(), et.end.isoformat()) if et is not None else None,
        done=frozenset(b.index for b in state.history if b.state == "completed"),
        audit_url=links["audit_url"], pr_url=links["pr_url"], commit_url=links["commit_url"])


MAX_ERROR_CHARS = 300
MAX_LISTED = 50


def summary_detail(config: Config, flow_run_id: str) -> dict[str, Any]:
    """What a failed run left behind, from its ``summary.json``: the first failing node with dbt's
    message (truncated, secrets stripped), the models it rebuilt and the nodes dbt skipped."""
    from .redact import redact

    data = _summary(config, flow_run_id)
    out: dict[str, Any] = {"rebuilt": tuple(str(u) for u in (data.get("rebuilt") or ())[:MAX_LISTED]),
                           "skipped": tuple(str(u) for u in (data.get("skipped") or ())[:MAX_LISTED])}
    failed = [f for f in data.get("failed") or () if isinstance(f, dict)]
    if failed:
        first = failed[0]
        message = " ".join(str(first.get("message") or "").split())
        if len(message) > MAX_ERROR_CHARS:
            message = message[: MAX_ERROR_CHARS - 1] + "…"
        more = f" (and {len(failed) - 1} more failing node(s))" if len(failed) > 1 else ""
        out["error"] = redact(f"{first.get('unique_id')} {first.get('status')}: {message}{more}")
    elif data.get("error"):
        out["error"] = redact(" ".join(str(data["error"]).split())[:MAX_ERROR_CHARS])
    return out


def _summary(config: Config, flow_run_id: str) -> dict[str, Any]:
    """The run's ``summary.json`` from its storage (a local folder or a URL); {} if not readable."""
    from . import storage

    base = config.prefect.run_results_storage_path or config.root / ".rescue" / "runs"
    try:
        location = storage.join(base, flow_run_id, "summary.json")
        data = storage.read_json(location, config.storage.credentials())
    except RescueError:
        return {}
    return data if isinstance(data, dict) else {}


def _outcome(config: Config, run_id: str, state: str | None) -> dict[str, Any]:
    """RunView fields from the run's summary (counts; for runs that did not complete, what they left)."""
    counts, failed = summary_counts(config, run_id)
    out: dict[str, Any] = {"counts": counts, "failed_nodes": failed}
    if state not in (None, "COMPLETED"):
        out.update(summary_detail(config, run_id))
    return out


def summary_counts(config: Config, flow_run_id: str) -> tuple[Mapping[str, int], tuple[str, ...]]:
    """dbt result counts and failing node ids from the run's ``summary.json`` (empty if not readable)."""
    data = _summary(config, flow_run_id)
    counts = {str(k): int(v) for k, v in (data.get("counts") or {}).items() if isinstance(v, int)}
    failed = tuple(str(f.get("unique_id")) for f in data.get("failed") or () if isinstance(f, dict))
    return counts, failed[:MAX_FAILED_NODES]


def _parsed_manifest(dbt: Any) -> Any:
    """The manifest validation parsed from the configured project (the flow then skips its own
    parse); None when validation read a manifest artifact, which may not be this project."""
    return dbt.manifest if str(getattr(dbt, "source", "")).startswith("project") else None
