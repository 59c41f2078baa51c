"""Model-based test of the runner: ticks, crashes at every fault point, run outcomes, clock steps.

The real ``Runner`` and ``reconcile`` over the fakes of ``support.runner_fakes``. Invariants
after every step: at most one run per batch key (the fake Prefect has no idempotency, so a
double submission would show), batches in order (each earlier batch completed, its pause
over, nothing else of the request in flight), the audit trail consistent. At the end, with
every run finished and time moved on, every request settles and every run is in the trail
exactly once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from support.runner_fakes import (
    FakeExecutor,
    FakeLock,
    FakePrefect,
    FakeSource,
    FakeStore,
    FakeValidator,
    LockState,
    ManualClock,
    PushFailed,
    Spec,
    crash_at,
)

from rescue_runner import audit
from rescue_runner.faults import POINTS, Crash, no_faults
from rescue_runner.runner import Runner

OUTCOMES = ("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "CRASHED", "RUNNING")


class RunnerMachine(RuleBasedStateMachine):
    @initialize(lookup=st.booleans())
    def setup(self, lookup: bool) -> None:
        self.clock = ManualClock()
        self.remote: list[audit.AuditEvent] = []
        self.lock = LockState()
        self.specs: dict[str, Spec] = {}
        self.prefect = FakePrefect(audit=self.remote, clock=self.clock, lookup_before_submit=lookup)
        self.fail_pushes: list[str] = []
        self.armed: Any = None
        self.crashes = 0
        self.ticks = 0
        self.next_id = 0
        self.vanished: set[str] = set()

    # -- the world --

    @rule(batches=st.integers(1, 3), pause=st.sampled_from([0.0, 0.0, 5.0]), priority=st.integers(0, 2),
          window=st.sampled_from([None, None, (13, 14)]), expires=st.sampled_from([None, None, 3]))
    def add_request(self, batches: int, pause: float, priority: int, window: tuple[int, int] | None,
                    expires: int | None) -> None:
        if len(self.specs) >= 4:
            return
        self.next_id += 1
        rid = f"req-{self.next_id}"
        until = self.clock.now() + timedelta(hours=expires) if expires else None
        self.specs[rid] = Spec(rid, batches, pause, priority, window_hours=window, order=self.next_id,
                               expires=until)

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def delete_request(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.specs)))
        del self.specs[rid]

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def edit_request(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.specs)))
        self.specs[rid].version += 1

    @rule(minutes=st.sampled_from([1, 6, 30, 60 * 23]))
    def advance_clock(self, minutes: int) -> None:
        self.clock.t += timedelta(minutes=minutes)

    @rule(busy=st.booleans())
    def queue(self, busy: bool) -> None:
        self.prefect.queue_busy = busy

    @precondition(lambda self: any(r.state in ("SCHEDULED", "RUNNING") for r in self.prefect.runs.values()))
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def run_progresses(self, data: st.DataObject, outcome: str) -> None:
        live = sorted(r.id for r in self.prefect.runs.values() if r.state in ("SCHEDULED", "RUNNING"))
        self.prefect.runs[data.draw(st.sampled_from(live))].state = outcome

    def _recorded_live(self) -> list[str]:
        recorded = {e.fields["flow_run_id"] for e in self.remote if e.type == audit.BATCH_SUBMITTED}
        return sorted(r.id for r in self.prefect.runs.values()
                      if r.state in ("SCHEDULED", "RUNNING") and r.id in recorded)

    @precondition(lambda self: bool(self._recorded_live()))
    @rule(data=st.data())
    def run_vanishes(self, data: st.DataObject) -> None:
        # Someone deletes a run in Prefect. Only runs already in the trail: a run deleted before any
        # runner recorded it leaves no trace anywhere and cannot be told from one never submitted.
        if data.draw(st.integers(0, 9)) == 0:
            victim = data.draw(st.sampled_from(self._recorded_live()))
            del self.prefect.runs[victim]
            self.vanished.add(victim)

    @rule(point=st.sampled_from(sorted(POINTS)), nth=st.integers(1, 3))
    def arm_crash(self, point: str, nth: int) -> None:
        self.armed = crash_at(point, nth)

    @rule(event_type=st.sampled_from(audit.EVENT_TYPES))
    def remote_down(self, event_type: str) -> None:
        self.fail_pushes.append(event_type)  # the next push of such an event fails: the runner stops

    @rule()
    def tick(self) -> None:
        self._tick(self.armed or no_faults)
        self.armed = None

    @precondition(lambda self: any(s.terminal and s.outcome in (audit.FAILED, audit.NEEDS_OPERATOR)
                                   for s in audit.derive_all(self.remote).values()))
    @rule(data=st.data())
    def operator_retry(self, data: st.DataObject) -> None:
        states = audit.derive_all(self.remote)
        rid = data.draw(st.sampled_from(sorted(r for r, s in states.items()
                                               if s.outcome in (audit.FAILED, audit.NEEDS_OPERATOR))))
        if self.lock.holder is not None and self.lock.alive:
            return
        s = states[rid]
        self.remote.append(audit.AuditEvent(audit.OPERATOR_RETRY, rid, self.clock.now(), s.last_seq + 1,
                                            f"{len(self.remote):08x}",
                                            {"attempt": s.attempt + 1, "by": "op", "reason": "checked it"}))

    def _tick(self, fault: Any) -> None:
        self.ticks += 1
        holder = f"runner-{self.ticks}"
        store = FakeStore(self.remote, fault, self.fail_pushes)
        runner = Runner(store=store, source=FakeSource(self.specs, self.clock),
                        lock=FakeLock(self.lock, holder, self.clock),
                        make_validator=lambda: FakeValidator(self.specs),
                        make_executor=lambda: FakeExecutor(self.prefect), clock=self.clock, fault=fault,
                        event_id=lambda: f"{self.ticks:04x}{len(self.remote):08x}")
        try:
            runner.apply()
        except Crash:
            self.crashes += 1
            self.lock.alive = False  # the process is gone; its lock stays until taken over
        except PushFailed:
            self.lock.alive = False  # exited with an error; a lock it kept is taken over next time
        # A finished pass leaves no live holder behind.
        if self.lock.holder == holder and self.lock.alive:
            raise AssertionError("the runner kept the lock after its pass")

    # -- invariants --

    @invariant()
    def one_run_per_batch_key(self) -> None:
        twice = {k: n for k, n in self.prefect.submits.items() if n > 1}
        assert not twice, f"submitted more than once: {twice}"

    @invariant()
    def batches_in_order(self) -> None:
        assert not self.prefect.violations, self.prefect.violations

    @invariant()
    def audit_consistent(self) -> None:
        assert audit.check_consistency(self.remote) == []
        for e in self.remote:
            if e.type == audit.BATCH_SUBMITTED:
                run_id = e.fields["flow_run_id"]
                assert run_id in self.prefect.runs or run_id in self.vanished

    def teardown(self) -> None:
        if not hasattr(self, "clock"):
            return
        # Let the world settle: every run finishes, time moves past windows and pauses, no crashes.
        self.prefect.queue_busy = False
        self.fail_pushes.clear()
        for _ in range(100):  # hour by hour, so a one-hour daily window is met every day
            for r in self.prefect.runs.values():
                if r.state in ("SCHEDULED", "RUNNING"):
                    r.state = "COMPLETED"
            self.clock.t += timedelta(hours=1)
            self._tick(no_faults)
        states = audit.derive_all(self.remote)
        recorded = [e.fields["flow_run_id"] for e in self.remote if e.type == audit.BATCH_SUBMITTED]
        assert len(recorded) == len(set(recorded)), "a run recorded twice"
        assert set(recorded) - self.vanished == set(self.prefect.runs), \
            f"runs not in the trail: {set(self.prefect.runs) - set(recorded)}"
        for rid, s in states.items():
            assert s.terminal, f"{rid} did not settle: {s.status} {s.reason}"
        for rid in self.specs:
            assert rid in states and states[rid].terminal, f"{rid} never finished"
        assert audit.check_consistency(self.remote) == []


RunnerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestRunnerModel = RunnerMachine.TestCase


def _one_tick(specs: dict[str, Spec], prefect: FakePrefect, remote: list[audit.AuditEvent],
              clock: ManualClock) -> list[str]:
    lines: list[str] = []
    Runner(store=FakeStore(remote, no_faults), source=FakeSource(specs, clock),
           lock=FakeLock(LockState(), "runner", clock), make_validator=lambda: FakeValidator(specs),
           make_executor=lambda: FakeExecutor(prefect), clock=clock, say=lines.append).apply()
    return lines


def test_requests_go_by_priority_then_merge_order_and_each_asks_the_queue() -> None:
    clock, remote = ManualClock(), list[audit.AuditEvent]()
    specs = {"a": Spec("a", 1, order=1), "b": Spec("b", 1, order=2, priority=5), "c": Spec("c", 1, order=3)}
    prefect = FakePrefect(audit=remote, clock=clock, queue_busy=True)
    lines = _one_tick(specs, prefect, remote, clock)
    assert [line for line in lines if "waiting" in line] == [
        "b: waiting (queue_busy): wait: 5/5 slots busy",
        "a: waiting (queue_busy): wait: 5/5 slots busy",
        "c: waiting (queue_busy): wait: 5/5 slots busy"]
    prefect.queue_busy = False
    _one_tick(specs, prefect, remote, clock)
    assert [r.rid for r in sorted(prefect.runs.values(), key=lambda r: r.id)] == ["b", "a", "c"]


def test_no_head_of_line_blocking_but_lineage_keeps_merge_order() -> None:
    """A heavy request waiting for room does not hold back an independent light one; a request
    whose models depend on the waiting one's waits for it to finish."""
    clock, remote = ManualClock(), list[audit.AuditEvent]()
    specs = {"heavy": Spec("heavy", 1, order=1, heavy=True),
             "light": Spec("light", 1, order=2),
             "below": Spec("below", 1, order=3, upstream=("model.p.heavy_1",))}
    prefect = FakePrefect(audit=remote, clock=clock, heavy_waits=True)
    lines = _one_tick(specs, prefect, remote, clock)
    assert [r.rid for r in prefect.runs.values()] == ["light"]
    assert "heavy: waiting (queue_busy): wait: 5/5 slots busy" in lines
    assert ("below: waiting (after_request): after heavy: merged earlier and not finished; "
            "this request depends on heavy_1") in lines
    prefect.heavy_waits = False
    _one_tick(specs, prefect, remote, clock)
    assert sorted(r.rid for r in prefect.runs.values()) == ["heavy", "light"]
    for run in prefect.runs.values():
        run.state = "COMPLETED"
    _one_tick(specs, prefect, remote, clock)
    assert sorted(r.rid for r in prefect.runs.values()) == ["below", "heavy", "light"]


def test_a_closing_window_goes_first() -> None:
    clock, remote = ManualClock(), list[audit.AuditEvent]()
    hour = clock.now().hour
    specs = {"days": Spec("days", 1, order=1),
             "closing": Spec("closing", 1, order=2, window_hours=(hour, hour + 1))}
    prefect = FakePrefect(audit=remote, clock=clock)
    _one_tick(specs, prefect, remote, clock)
    assert [r.rid for r in sorted(prefect.runs.values(), key=lambda r: r.id)] == ["closing", "days"]
    assert [a.window_end is not None for a in prefect.asks] == [True, False]
