#!/usr/bin/env bash
# Local Kafka (single-node KRaft, real Apache jars from Maven Central) and Redis, no Docker.
#
#   scripts/services.sh start|stop|status [all|kafka|redis]
#
# Idempotent: a service already answering on its port is left alone. `stop` stops only
# the processes this script started (pid files under $FLEETGATE_RUN). Logs: $FLEETGATE_RUN/*.log
# The second argument picks one service (default: all); tests start a private broker with
#   KAFKA_PORT=… KAFKA_CONTROLLER_PORT=… FLEETGATE_RUN=<dir> scripts/services.sh start kafka
# A replicated cluster on loopback: KAFKA_BROKERS=3 (3 to 5) starts that many combined
# broker+controller nodes on KAFKA_PORT, KAFKA_PORT+1, … (controllers on KAFKA_CONTROLLER_PORT+i),
# with replication factor 3, min.insync.replicas 2 and no unclean leader election. KAFKA_NODE=<n>
# limits start/stop to node n (a rolling restart: stop node n, start it, wait, next).
# KAFKA_AUTO_CREATE_TOPICS=false: a single node that does not create a topic a client asks about.
set -euo pipefail

LOG_TAG=services
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_HEAP="${KAFKA_HEAP:-768m}"
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
KAFKA_NODE="${KAFKA_NODE:-}"
case "$KAFKA_BROKERS" in
  1|3|4|5) ;;
  *) die "KAFKA_BROKERS=$KAFKA_BROKERS: a single node (1) or a cluster of 3 to 5 brokers; 2 cannot lose a broker (KRaft needs a majority of controllers, min.insync.replicas is 2)" ;;
esac
if [ -n "$KAFKA_NODE" ] && ! { [ "$KAFKA_NODE" -ge 1 ] 2>/dev/null && [ "$KAFKA_NODE" -le "$KAFKA_BROKERS" ]; }; then
  die "KAFKA_NODE=$KAFKA_NODE: a node number from 1 to KAFKA_BROKERS=$KAFKA_BROKERS"
fi
NODES="$(seq 1 "$KAFKA_BROKERS")"
[ -z "$KAFKA_NODE" ] || NODES="$KAFKA_NODE"
node_port() { echo $((KAFKA_PORT + $1 - 1)); }
node_controller() { echo $((CONTROLLER_PORT + $1 - 1)); }
voters() {
  local out="" i
  for i in $(seq 1 "$KAFKA_BROKERS"); do out="$out${out:+,}$i@127.0.0.1:$(node_controller "$i")"; done
  echo "$out"
}


resolve_kafka_jars() {
  if [ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ] && ls "$LIB"/slf4j-simple-*.jar >/dev/null 2>&1; then
    return
  fi
  need java "Install a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)."
  need mvn "Install Maven (Debian: apt-get install -y maven); it fetches the Kafka jars from Maven Central."
  log "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  mkdir -p "$LIB"
  mvn -q -B -f "$ROOT/scripts/kafka-pom.xml" -Dmaven.repo.local="$CACHE/m2" \
    -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB" \
    || die "maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see output above)"
}

write_kafka_config() {  # node number
  local node="$1" port controller
  port="$(node_port "$node")"
  controller="$(node_controller "$node")"
  mkdir -p "$RUN"
  cat >"$RUN/server-$port.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN/kafka-data-$port
$(if [ "$KAFKA_BROKERS" = 1 ]; then single_node_properties; else cluster_properties; fi)
log.retention.hours=168
log.segment.bytes=67108864
PROPS
}

cluster_id() {
  # One id for every node of a cluster, kept with the data so a restarted node formats alike.
  local file="$RUN/kafka-cluster-$KAFKA_PORT.id"
  mkdir -p "$RUN"
  [ -s "$file" ] || java -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 >"$file"
  cat "$file"
}

start_kafka() {  # node number
  local node="$1" port
  port="$(node_port "$node")"
  if port_open "$port"; then
    log "kafka: something already listens on 127.0.0.1:$port, leaving it"
    return
  fi
  resolve_kafka_jars
  need java "Install a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)."
  write_kafka_config "$node"
  local cfg="$RUN/server-$port.properties" data="$RUN/kafka-data-$port"
  if [ ! -f "$data/meta.properties" ]; then
    local id
    id="$(cluster_id)"
    log "kafka: formatting KRaft storage $data (cluster $id, node $node)"
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "$id" -c "$cfg" --ignore-formatted \
      >"$RUN/kafka-format-$port.log" 2>&1 || die "kafka storage format failed, see $RUN/kafka-format-$port.log"
  fi
  log "kafka: starting Apache Kafka $KAFKA_VERSION node $node/$KAFKA_BROKERS on 127.0.0.1:$port (log $RUN/kafka-$port.log)"
  # A broker holds a few files open per partition; a test run creates thousands of partitions,
  # and at the file limit the broker marks its log dir failed and shuts down. Raise the limit
  # as far as this shell may (root: up to fs.nr_open).
  ( ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  exec nohup java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -Dorg.slf4j.simpleLogger.log.kafka.log=warn -Dorg.slf4j.simpleLogger.log.state.change.logger=warn \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$LIB/*" kafka.Kafka "$cfg" ) >"$RUN/kafka-$port.log" 2>&1 &
  echo $! >"$RUN/kafka-$port.pid"
}

wait_kafka() {  # node number
  # Ready means: the broker answers a metadata request, not merely that the port is open.
  local port
  port="$(node_port "$1")"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  while [ $SECONDS -lt $deadline ]; do
    # The server logs this line once it serves requests (a broker of a cluster: once it has
    # joined the controller quorum); a broker this script did not start is asked with a client.
    if port_open "$port" && { grep -q "Kafka Server started" "$RUN/kafka-$port.log" 2>/dev/null \
      || java -cp "$LIB/*" -Dorg.slf4j.simpleLogger.defaultLogLevel=error \
        kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1; }; then
      log "kafka: ready on 127.0.0.1:$port"
      return
    fi
    if [ -f "$RUN/kafka-$port.pid" ] && ! pid_alive "$RUN/kafka-$port.pid"; then
      tail -n 30 "$RUN/kafka-$port.log" >&2 || true
      die "kafka exited during start-up, see $RUN/kafka-$port.log"
    fi
    sleep 1
  done
  die "kafka did not answer metadata requests on 127.0.0.1:$port in time, see $RUN/kafka-$port.log"
}

redis_binary() {
  if command -v redis-server >/dev/null 2>&1; then command -v redis-server; return; fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "redis: installing Debian's redis-server"
    (apt-get install -y -qq redis-server >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq redis-server >/dev/null 2>&1; }) \
      || die "apt-get could not install redis-server"
    command -v redis-server; return
  fi
  die "redis-server is missing: install it (Debian: apt-get install -y redis-server) or set REDIS_URL to a running Redis"
}

start_redis() {
  if port_open "$REDIS_PORT"; then
    log "redis: something already listens on 127.0.0.1:$REDIS_PORT, leaving it"
    return
  fi
  local bin
  bin="$(redis_binary)"
  mkdir -p "$RUN/redis-$REDIS_PORT"
  log "redis: starting $($bin --version | awk '{print $3}') on 127.0.0.1:$REDIS_PORT with AOF in $RUN/redis-$REDIS_PORT (log $RUN/redis-$REDIS_PORT.log)"
  # Append-only file, fsync'd every second: a restart (or a crash) keeps the inventory and the
  # executor's state, losing at most the last second of writes (docs/operations.md).
  "$bin" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN/redis-$REDIS_PORT" --daemonize yes \
    --pidfile "$RUN/redis-$REDIS_PORT.pid" --logfile "$RUN/redis-$REDIS_PORT.log" \
    --save "" --appendonly yes --appendfsync everysec >/dev/null
  local deadline=$((SECONDS + 20))
  until port_open "$REDIS_PORT"; do
    [ $SECONDS -lt $deadline ] || die "redis did not start, see $RUN/redis-$REDIS_PORT.log"
    sleep 0.2
  done
  log "redis: ready on 127.0.0.1:$REDIS_PORT"
}

stop_pidfile() {
  local name="$1" pidfile="$2"
  if pid_alive "$pidfile"; then
    local pid
    pid="$(cat "$pidfile")"
    log "$name: stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

WHICH="${2:-all}"
case "$WHICH" in
  all|kafka|redis) ;;
  *) echo "usage: $0 start|stop|status [all|kafka|redis]" >&2; exit 2 ;;
esac
wants() { [ "$WHICH" = all ] || [ "$WHICH" = "$1" ]; }

case "${1:-}" in
  start)
    mkdir -p "$RUN"
    if wants redis; then start_redis; fi
    if wants kafka; then
      resolve_kafka_jars  # also when a broker already runs: the readiness check uses the jars
      # All nodes first: a cluster's brokers wait for a controller quorum before they answer.
      # Started side by side (formatting storage takes a JVM start each).
      for n in $NODES; do  # one cluster id for all, before they start side by side
        [ -f "$RUN/kafka-data-$(node_port "$n")/meta.properties" ] || { cluster_id >/dev/null; break; }
      done
      pids=""
      for n in $NODES; do start_kafka "$n" & pids="$pids $!"; done
      for p in $pids; do wait "$p" || die "kafka start-up failed (see the messages above)"; done
      for n in $NODES; do wait_kafka "$n"; done
    fi
    ;;
  stop)
    if wants kafka; then for n in $NODES; do stop_pidfile kafka "$RUN/kafka-$(node_port "$n").pid"; done; fi
    if wants redis; then stop_pidfile redis "$RUN/redis-$REDIS_PORT.pid"; fi
    ;;
  status)
    for n in $NODES; do
      p="$(node_port "$n")"
      port_open "$p" && echo "kafka: up on $p" || echo "kafka: down ($p)"
    done
    port_open "$REDIS_PORT" && echo "redis: up on $REDIS_PORT" || echo "redis: down"
    ;;
  kafka-version)
    echo "$KAFKA_VERSION"
    ;;
  jars)
    resolve_kafka_jars
    echo "$LIB"
    ;;
  *)
    echo "usage: $0 start|stop|status [all|kafka|redis] | kafka-version | jars" >&2
    exit 2
    ;;
esac
