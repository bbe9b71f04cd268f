#!/usr/bin/env bash
# fleetgate demo: a staged firmware rollout of a simulated fleet, stopped by the gate.
#
#   scripts/demo.sh run    # (make demo) fresh run: topics, inventory, worker, executor, simulator,
#                          # rollout start, live view, summary; exit 0 only on the expected outcome
#   scripts/demo.sh stop   # (make stop) stop every process a demo run started (pid files)
#
# Every run gets a fresh run id: its own topic prefix (demo.<run>.), Redis namespace (demo-<run>)
# and consumer groups (demo-<run>), so nothing of an earlier run can interfere.  The previous
# run's topics and keys are deleted when the next run starts (the last run stays inspectable).
# Decisions are signed: the first run generates an Ed25519 key pair for the gate and one for the
# operator "demo" under .cache/run/demo/keys/ (private keys mode 600); the worker gets the gate's
# private key, `rollout start` the operator's, the executor and the summary the public keys only.
# Knobs: DEMO_DEVICES (2000), DEMO_SEED (7), DEMO_SCENARIO (bad-model), DEMO_PLAN
# (plans/demo.yaml), DEMO_TIMEOUT (150 s), FLEETGATE_PY (python of the project venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${FLEETGATE_PY:-$ROOT/.venv/bin/python}"
RUN_DIR="${FLEETGATE_CACHE:-$ROOT/.cache}/run/demo"
DEVICES="${DEMO_DEVICES:-2000}"
SEED="${DEMO_SEED:-7}"
SCENARIO="${DEMO_SCENARIO:-bad-model}"
PLAN="${DEMO_PLAN:-plans/demo.yaml}"
TIMEOUT="${DEMO_TIMEOUT:-150}"
KEY_DIR="$RUN_DIR/keys"
PROCS=(simulator executor worker)   # stop order: devices first, the worker last

fg() { "$PY" -m streams.cli "$@"; }
say() { printf '\033[1m== %s\033[0m\n' "$*"; }

stop_one() {  # stop_one NAME: SIGTERM the pid in NAME.pid, wait, then SIGKILL
  local f="$RUN_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$1 (pid $pid) did not stop in 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

stop_all() {
  local name
  for name in "${PROCS[@]}"; do stop_one "$name"; done
}

keys() {  # one key pair per signer, made once; the executor's list holds both public keys
  mkdir -p "$KEY_DIR" && chmod 700 "$KEY_DIR"
  [[ -f "$KEY_DIR/gate-demo.key" ]] || fg keys generate --signer gate --key-id gate-demo --dir "$KEY_DIR" >/dev/null
  [[ -f "$KEY_DIR/op-demo.key" ]] || fg keys generate --signer operator:demo --key-id op-demo --dir "$KEY_DIR" >/dev/null
  cat "$KEY_DIR/gate-demo.pub" "$KEY_DIR/op-demo.pub" >"$KEY_DIR/verify.keys"
}

start_bg() {  # start_bg NAME CMD...: background process, log and pid file in the run dir
  local name="$1"; shift
  "$@" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

run() {
  local t0 run_id rc=0 start=$SECONDS
  t0="$(date +%s.%N)"
  [[ -x "$PY" ]] || { echo "no python at $PY: run 'make venv' (or set FLEETGATE_PY)" >&2; exit 2; }
  mkdir -p "$RUN_DIR"
  stop_all   # idempotent: a previous run's processes, if any
  if [[ -f "$RUN_DIR/run.env" ]]; then   # the previous run's topics and Redis keys
    # shellcheck disable=SC1091
    ( source "$RUN_DIR/run.env" && "$PY" -m streams.demo cleanup \
        --prefix "$FLEETGATE_TOPIC_PREFIX" --namespace "$FLEETGATE_REDIS_NAMESPACE" ) || true
  fi
  rm -f "$RUN_DIR"/*.log "$RUN_DIR"/*.json "$RUN_DIR"/*.csv
  run_id="$(date +%H%M%S)-$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export FLEETGATE_TOPIC_PREFIX="demo.$run_id."
  export FLEETGATE_REDIS_NAMESPACE="demo-$run_id"
  export FLEETGATE_GROUP_ID="demo-$run_id"
  export FLEETGATE_POLICY="$ROOT/policies/demo.yaml"
  printf 'export FLEETGATE_TOPIC_PREFIX=%s\nexport FLEETGATE_REDIS_NAMESPACE=%s\nexport FLEETGATE_GROUP_ID=%s\nexport FLEETGATE_POLICY=%s\n' \
    "$FLEETGATE_TOPIC_PREFIX" "$FLEETGATE_REDIS_NAMESPACE" "$FLEETGATE_GROUP_ID" "$FLEETGATE_POLICY" >"$RUN_DIR/run.env"
  local rollout
  rollout="$("$PY" -c 'import sys; from streams.executor import load_plan; print(load_plan(sys.argv[1]).rollout_id)' "$PLAN")"

  say "run $run_id: topics ${FLEETGATE_TOPIC_PREFIX}*, Redis namespace $FLEETGATE_REDIS_NAMESPACE, policy policies/demo.yaml"
  fg topics create >/dev/null
  say "inventory: $DEVICES simulated devices (seed $SEED)"
  fg simulate inventory --devices "$DEVICES" --seed "$SEED" -o "$RUN_DIR/fleet.csv" >/dev/null
  fg inventory load "$RUN_DIR/fleet.csv"

  say "signing keys (Ed25519) in ${KEY_DIR#"$ROOT"/}: gate and operator:demo sign, the executor verifies"
  keys
  local gate_key="FLEETGATE_SIGNING_KEYS=@$KEY_DIR/gate-demo.key" op_key="FLEETGATE_SIGNING_KEYS=@$KEY_DIR/op-demo.key"
  export FLEETGATE_VERIFY_KEYS="@$KEY_DIR/verify.keys"   # public: executor, watch, summary
  unset FLEETGATE_SIGNING_KEYS

  say "starting the gate worker, the executor and the simulator (scenario $SCENARIO); logs in ${RUN_DIR#"$ROOT"/}"
  start_bg worker env "$gate_key" "$PY" -m streams.cli worker --instance "demo-$run_id" --log-level WARNING
  start_bg executor "$PY" -m streams.cli executor --offline-after 30s
  start_bg simulator "$PY" -m streams.cli simulate --devices "$DEVICES" --seed "$SEED" \
    --scenario "$SCENARIO" --truth-out "$RUN_DIR/truth.json" --log-level WARNING
  sleep 3   # let the simulator assign its command consumer and the first reports flow

  say "rollout start $PLAN"
  env "$op_key" "$PY" -m streams.cli rollout start "$PLAN" --by demo --reason "make demo: staged firmware rollout (scenario $SCENARIO)"

  "$PY" -m streams.demo watch "$rollout" --timeout "$TIMEOUT" --pid-dir "$RUN_DIR" \
    --title "fleetgate demo ($SCENARIO, $DEVICES devices)" || rc=$?

  say "stopping the demo processes"
  stop_all
  say "fleetgate fleet versions --rollout $rollout"
  fg fleet versions --rollout "$rollout" || true
  "$PY" -m streams.demo summary "$rollout" --truth "$RUN_DIR/truth.json" --max-windows 4 \
    --json-out "$RUN_DIR/outcome.json" --wall-start "$t0" || rc=$((rc ? rc : $?))
  if ((rc)); then
    say "the demo did NOT reach the expected outcome (logs in ${RUN_DIR#"$ROOT"/})"
  else
    say "demo OK in $((SECONDS - start)) s"
  fi
  return "$rc"
}

trap 'stop_all; exit 130' INT TERM
case "${1:-}" in
  run) run ;;
  stop) stop_all ;;
  *) echo "usage: $0 run|stop" >&2; exit 2 ;;
esac
