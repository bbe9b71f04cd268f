#!/usr/bin/env bash
# Local Kafka (single-node KRaft, real Apache jars from Maven Central) and Redis, no Docker.
#
#   scripts/services.sh start|stop|status [all|kafka|redis]
#
# Idempotent: a service already answering on its port is left alone. `stop` stops only
# the processes this script started (pid files under $FLEETGATE_RUN). Logs: $FLEETGATE_RUN/*.log
# The second argument picks one service (default: all); tests start a private broker with
#   KAFKA_PORT=… KAFKA_CONTROLLER_PORT=… FLEETGATE_RUN=<dir> scripts/services.sh start kafka
set -euo pipefail

LOG_TAG=services
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_HEAP="${KAFKA_HEAP:-768m}"
KAFKA_DATA="$RUN/kafka-data-$KAFKA_PORT"


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

write_kafka_config() {
  mkdir -p "$RUN"
  cat >"$RUN/server-$KAFKA_PORT.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
$(single_node_properties)
log.retention.hours=168
log.segment.bytes=67108864
PROPS
}

start_kafka() {
  if port_open "$KAFKA_PORT"; then
    log "kafka: something already listens on 127.0.0.1:$KAFKA_PORT, leaving it"
    return
  fi
  resolve_kafka_jars
  need java "Install a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)."
  write_kafka_config
  local cfg="$RUN/server-$KAFKA_PORT.properties"
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    log "kafka: formatting KRaft storage $KAFKA_DATA (cluster $cluster_id)"
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$cfg" --ignore-formatted \
      >"$RUN/kafka-format.log" 2>&1 || die "kafka storage format failed, see $RUN/kafka-format.log"
  fi
  log "kafka: starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (log $RUN/kafka-$KAFKA_PORT.log)"
  nohup java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -Dorg.slf4j.simpleLogger.log.kafka.log=warn -Dorg.slf4j.simpleLogger.log.state.change.logger=warn \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$LIB/*" kafka.Kafka "$cfg" >"$RUN/kafka-$KAFKA_PORT.log" 2>&1 &
  echo $! >"$RUN/kafka-$KAFKA_PORT.pid"
}

wait_kafka() {
  # Ready means: the broker answers a metadata request, not merely that the port is open.
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  while [ $SECONDS -lt $deadline ]; do
    if port_open "$KAFKA_PORT" && java -cp "$LIB/*" -Dorg.slf4j.simpleLogger.defaultLogLevel=error \
      kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1; then
      log "kafka: ready on 127.0.0.1:$KAFKA_PORT"
      return
    fi
    if [ -f "$RUN/kafka-$KAFKA_PORT.pid" ] && ! pid_alive "$RUN/kafka-$KAFKA_PORT.pid"; then
      tail -n 30 "$RUN/kafka-$KAFKA_PORT.log" >&2 || true
      die "kafka exited during start-up, see $RUN/kafka-$KAFKA_PORT.log"
    fi
    sleep 1
  done
  die "kafka did not answer metadata requests on 127.0.0.1:$KAFKA_PORT in time, see $RUN/kafka-$KAFKA_PORT.log"
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
      start_kafka
      wait_kafka
    fi
    ;;
  stop)
    if wants kafka; then stop_pidfile kafka "$RUN/kafka-$KAFKA_PORT.pid"; fi
    if wants redis; then stop_pidfile redis "$RUN/redis-$REDIS_PORT.pid"; fi
    ;;
  status)
    port_open "$KAFKA_PORT" && echo "kafka: up on $KAFKA_PORT" || echo "kafka: down"
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
