"""Operator decisions: start, pause, resume and rollback written to the control topic.

Each is a :class:`~gates.events.Decision` with ``source=OPERATOR``, ``operator`` (who) and
``note`` (why), so replay and analysts see the same audit trail as the executor.  A start
stores the validated plan definition in Redis first; the decision names its sha256.
"""

from __future__ import annotations

from collections.abc import Callable

from gates.events import Action, Decision, DecisionSource, Reason
from streams.config import Settings
from streams.executor.errors import ExecutorError, UnknownRollout
from streams.executor.kafka import produce_decision
from streams.executor.machine import RESUME_PREFIX, START_PREFIX, operator_decision_id
from streams.executor.plans import PlanSpec
from streams.executor.runner import wall_clock_ms
from streams.executor.store import ExecutorStore

__all__ = ["OPERATOR_ACTIONS", "operator_decision", "request", "start"]

# verb -> (action, note prefix)
OPERATOR_ACTIONS: dict[str, tuple[Action, str]] = {
    "start": (Action.PROCEED, START_PREFIX),
    "pause": (Action.PAUSE, "pause:"),
    "resume": (Action.PROCEED, RESUME_PREFIX),
    "rollback": (Action.ROLLBACK, "rollback:"),
}


def operator_decision(
    verb: str,
    rollout_id: str,
    stage: int,
    stage_name: str,
    operator: str,
    reason: str,
    now_ms: int,
    policy_version: str = "operator",
    reasons: tuple[Reason, ...] = (),
) -> Decision:
    action, prefix = OPERATOR_ACTIONS[verb]
    note = f"{prefix} {reason}".rstrip()
    return Decision(
        decision_id=operator_decision_id(rollout_id, stage, action, operator, note, now_ms),
        rollout_id=rollout_id,
        stage=stage,
        stage_name=stage_name,
        action=action,
        source=DecisionSource.OPERATOR,
        window_start_ms=now_ms,
        window_end_ms=now_ms,
        watermark_ms=now_ms,
        policy_version=policy_version,
        engine_version="operator",
        reasons=reasons,
        operator=operator,
        note=note,
    )


def _signable(settings: Settings, operator: str, allow_unsigned: bool) -> None:
    """Fail before anything is stored when ``operator`` has no private key here."""
    from streams.security.keys import operator_signer
    from streams.security.signing import require_key

    require_key(settings.signing_keys_parsed(), operator_signer(operator), allow_unsigned)


def start(
    settings: Settings,
    spec: PlanSpec,
    operator: str,
    reason: str,
    clock: Callable[[], int] = wall_clock_ms,
    *,
    allow_unsigned: bool = False,
) -> Decision:
    """Store the plan definition and write the start decision, signed with ``operator``'s key."""
    _signable(settings, operator, allow_unsigned)
    store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
    existing = store.load_status(spec.rollout_id)
    if existing is not None:
        raise ExecutorError(
            f"rollout {spec.rollout_id!r} already exists ({existing.state.value} at stage {existing.current_stage})"
        )
    digest = store.save_definition(spec)
    evidence = Reason(
        rule_id="operator:start",
        metric="plan_sha256",
        verdict="pass",
        observed=None,
        baseline=None,
        threshold=0.0,
        sample_size=len(spec.stages),
        detail=digest,
    )
    d = operator_decision(
        "start",
        spec.rollout_id,
        0,
        spec.stages[0].name,
        operator,
        reason,
        clock(),
        spec.policy_version,
        (evidence,),
    )
    produce_decision(settings, d, allow_unsigned=allow_unsigned)
    return d


def request(
    settings: Settings,
    verb: str,
    rollout_id: str,
    operator: str,
    reason: str,
    clock: Callable[[], int] = wall_clock_ms,
    stage: int | None = None,
    *,
    allow_unsigned: bool = False,
) -> Decision:
    """Pause, resume or roll back: aimed at the rollout's current stage unless ``stage`` is given."""
    if verb not in ("pause", "resume", "rollback"):
        raise ValueError(f"unknown operator verb {verb!r}")
    _signable(settings, operator, allow_unsigned)
    store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
    st = store.load_status(rollout_id)
    if st is None:
        raise UnknownRollout(
            f"the executor has no rollout {rollout_id!r} (namespace {settings.redis_namespace!r})"
        )
    s = st.current_stage if stage is None else stage
    if not 0 <= s < len(st.spec.stages):
        raise ExecutorError(f"stage {s} out of range 0..{len(st.spec.stages) - 1}")
    d = operator_decision(
        verb, rollout_id, s, st.spec.stages[s].name, operator, reason, clock(), st.spec.policy_version
    )
    produce_decision(settings, d, allow_unsigned=allow_unsigned)
    return d
