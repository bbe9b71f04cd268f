"""What the ingest stage does with each Kafka error of its transactional path.

librdkafka's transactional producer sorts its errors into three kinds (``INTRODUCTION.md``,
"Transactional producer"; ``rdkafka.h`` on each call):

- *fatal* (``error.fatal()``): the producer instance is unusable, e.g. fenced by a newer
  producer with the same ``transactional.id`` or not authorised for it;
- *abortable* (``txn_requires_abort()``): the open transaction failed (a produce request was
  rejected, the coordinator timed it out) but ``abort_transaction`` works;
- *retriable* (``retriable()``): the call may be made again, e.g. ``commit_transaction`` that
  timed out.

Two more arrive in practice: transport errors (``_TRANSPORT``, ``_ALL_BROKERS_DOWN``,
``_TIMED_OUT``, coordinator moves ...) that librdkafka flags as none of the three -- a
``send_offsets_to_transaction`` in a broker outage fails with ``_TRANSPORT`` -- and consumer
errors.  The ingest stage never retries a call in place: whatever goes wrong, the open
transaction is aborted (``abort_transaction`` when abortable; otherwise the next producer's
``init_transactions`` aborts it and fences the old one) and the stage restarts from the last
commit with backoff, rebuilding its state from Kafka exactly as after a crash.  That is always
correct, so the only question an error asks is whether a restart can help:

=================  ==========================================================================
:attr:`Fault`      what the ingest stage does
=================  ==========================================================================
``FATAL``          stop the worker now, saying why (fenced by another live instance, not
                   authorised, a broker too old, a configuration no restart changes)
``ABORTABLE``      abort the transaction, restart from the last commit
``RETRIABLE``      restart from the last commit with backoff; also unrecognised errors
``TRANSPORT``      same as retriable (the broker is away or moving): restart with backoff
=================  ==========================================================================

A restart that keeps failing (``max_restarts`` in a row without one successful commit) stops
the worker too, naming the last error.  A consumer whose static membership was fenced
(``FENCED_INSTANCE_ID``: librdkafka reports it as fatal after the coordinator lost the session
during an outage) is restarted: a new consumer rejoins; if another live member uses the same
instance id the restarts run out and the message says so.
"""

from __future__ import annotations

import enum

from confluent_kafka import KafkaError

__all__ = ["CALLS", "Fault", "IngestFatal", "classify", "describe", "ends_producer_only", "hint"]

# The transactional path's calls, as named in messages and by the fault-injection tests.
CALLS = (
    "init_transactions",
    "begin_transaction",
    "produce",
    "send_offsets_to_transaction",
    "commit_transaction",
    "abort_transaction",
    "consume",
)


class Fault(enum.Enum):
    FATAL = "fatal"
    ABORTABLE = "abortable"
    RETRIABLE = "retriable"
    TRANSPORT = "transport"


class IngestFatal(RuntimeError):
    """The ingest stage cannot go on; the message says why (the worker exits non-zero)."""


E = KafkaError
# No restart changes these: permissions, authentication, protocol support, our configuration.
_NEVER_RECOVERS = frozenset(
    {
        E.TOPIC_AUTHORIZATION_FAILED,
        E.GROUP_AUTHORIZATION_FAILED,
        E.CLUSTER_AUTHORIZATION_FAILED,
        E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        E.SASL_AUTHENTICATION_FAILED,
        E.UNSUPPORTED_SASL_MECHANISM,
        E._AUTHENTICATION,
        E._SSL,
        E.UNSUPPORTED_VERSION,
        E._UNSUPPORTED_FEATURE,
        E.INVALID_TRANSACTION_TIMEOUT,
        E._INVALID_ARG,
    }
)
# Fatal to a consumer instance, not to the worker: group membership lost; a new consumer rejoins.
# The consumer's error callback reports its fatal error as `_FATAL` (the cause only in the text:
# "Static consumer fenced by other consumer with same group.instance.id" after a leader was lost).
_MEMBERSHIP = frozenset(
    {E.FENCED_INSTANCE_ID, E.UNKNOWN_MEMBER_ID, E.ILLEGAL_GENERATION, E._MAX_POLL_EXCEEDED, E._FATAL}
)
# The broker or coordinator is away or moving: librdkafka flags several of these as none of
# fatal / abortable / retriable (a `_TRANSPORT` from send_offsets_to_transaction in an outage).
_TRANSPORT = frozenset(
    {
        E._TRANSPORT,
        E._ALL_BROKERS_DOWN,
        E._TIMED_OUT,
        E._TIMED_OUT_QUEUE,
        E._MSG_TIMED_OUT,
        E._RESOLVE,
        E._WAIT_COORD,
        E._DESTROY_BROKER,
        E.REQUEST_TIMED_OUT,
        E.NETWORK_EXCEPTION,
        E.NOT_COORDINATOR,
        E.COORDINATOR_NOT_AVAILABLE,
        E.COORDINATOR_LOAD_IN_PROGRESS,
        E.NOT_LEADER_FOR_PARTITION,
        E.LEADER_NOT_AVAILABLE,
        E.NOT_ENOUGH_REPLICAS,
        E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    }
)
_FENCED = frozenset(
    {E._FENCED, E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH, E.TRANSACTION_COORDINATOR_FENCED}
)


def classify(error: KafkaError, *, consumer: bool = False) -> Fault:
    """The class of `error` raised by the ingest stage's producer (or, with `consumer`, its consumer)."""
    code = error.code()
    if code in _NEVER_RECOVERS:
        return Fault.FATAL
    if error.fatal():
        return Fault.RETRIABLE if consumer and code in _MEMBERSHIP else Fault.FATAL
    if error.txn_requires_abort():
        return Fault.ABORTABLE
    if code in _TRANSPORT:
        return Fault.TRANSPORT
    # Retriable, or not recognised (e.g. `_STATE`, an unknown topic): a restart rebuilds
    # everything from the last commit, which cannot make things worse; the budget bounds it.
    return Fault.RETRIABLE


def ends_producer_only(error: KafkaError) -> bool:
    """A fatal `error` that a new producer instance recovers from (not fenced, not refused).

    After a broker restart librdkafka can fail the abort that follows a transport error with a
    fatal `INVALID_TXN_STATE` ("Failed to end transaction"): that producer is unusable, but the
    next one's `init_transactions` settles the transaction, so the worker restarts instead."""
    return error.code() not in _FENCED and error.code() not in _NEVER_RECOVERS


def describe(call: str, error: KafkaError, fault: Fault) -> str:
    return f"{call} failed ({fault.value}): {error.name()}: {error.str()}"


def hint(error: KafkaError | None, transactional_id: str, bootstrap: str) -> str:
    """What an operator should check for a fatal error or an exhausted restart budget."""
    code = error.code() if error is not None else None
    if code in _FENCED:
        return (
            f"another producer with transactional id {transactional_id!r} took over: is a second "
            "worker running with the same --instance?"
        )
    if code in _NEVER_RECOVERS:
        return (
            "Kafka refuses this client: check the ACLs (topics, group, transactional id "
            f"{transactional_id!r}), the credentials and that the broker supports transactions"
        )
    if code in _MEMBERSHIP:
        return "the consumer keeps losing its group membership: is a second worker running with the same --instance?"
    return f"check that the Kafka brokers at {bootstrap} are up and reachable"
