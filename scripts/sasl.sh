#!/usr/bin/env bash
# A second local Kafka broker with a SASL_SSL (SCRAM-SHA-512) listener, for the security tests.
#
#   scripts/sasl.sh start|stop|status|env
#
# Same cached Apache Kafka jars as scripts/services.sh (run `make services` once first), but its
# own ports, data directory and TLS material, all under $FLEETGATE_RUN/sasl (.cache/run/sasl):
#
#   ca.key / ca.pem                  test CA (openssl), the clients' FLEETGATE_SSL_CA_LOCATION
#   broker.key / broker.pem          broker certificate for 127.0.0.1 and localhost, signed by the CA
#   broker.keystore.p12              keystore (PKCS12) made from the broker key + certificate
#   broker.truststore.p12            truststore (keytool) with the CA, used by the broker's own client
#   server.properties, kafka.log, kafka.pid, data/
#   users.env                        FLEETGATE_* settings for the test users (source it)
#
# SCRAM-SHA-512 users are created when the KRaft storage is formatted (StorageTool --add-scram):
#   admin (the broker itself, inter-broker), fleetgate-worker, fleetgate-executor, fleetgate-operator.
# Passwords: $SASL_ADMIN_PASSWORD and $SASL_PASSWORD (default: test-only values below).
# The CA and the users are test material: never use them outside a developer machine.
#
# Ports: SASL_KAFKA_PORT (9094) for clients, SASL_CONTROLLER_PORT (9095). Idempotent: a broker
# already answering on the port is left alone; `stop` stops only the pid this script started.
set -euo pipefail

LOG_TAG=sasl
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PORT="${SASL_KAFKA_PORT:-9094}"
CONTROLLER_PORT="${SASL_CONTROLLER_PORT:-9095}"
DIR="${SASL_DIR:-$RUN/sasl}"
DATA="$DIR/data-$PORT"
HEAP="${KAFKA_HEAP:-512m}"
ADMIN_PASSWORD="${SASL_ADMIN_PASSWORD:-admin-test-secret}"
PASSWORD="${SASL_PASSWORD:-fleetgate-test-secret}"
STORE_PASSWORD="${SASL_STORE_PASSWORD:-changeit-test}"
USERS="fleetgate-worker fleetgate-executor fleetgate-operator"


make_tls() {
  [ -f "$DIR/broker.keystore.p12" ] && [ -f "$DIR/broker.truststore.p12" ] && return
  need openssl "Install openssl (Debian: apt-get install -y openssl)."
  need keytool "Install a Java 17+ JDK/JRE with keytool."
  log "generating test CA and broker keystore/truststore in $DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=fleetgate-test-ca" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$DIR/broker.key" -out "$DIR/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$DIR/broker.ext"
  openssl x509 -req -in "$DIR/broker.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 30 -extfile "$DIR/broker.ext" -out "$DIR/broker.pem" 2>/dev/null
  openssl pkcs12 -export -name broker -inkey "$DIR/broker.key" -in "$DIR/broker.pem" -certfile "$DIR/ca.pem" \
    -passout "pass:$STORE_PASSWORD" -out "$DIR/broker.keystore.p12"
  rm -f "$DIR/broker.truststore.p12"
  keytool -importcert -noprompt -alias fleetgate-test-ca -file "$DIR/ca.pem" \
    -keystore "$DIR/broker.truststore.p12" -storetype PKCS12 -storepass "$STORE_PASSWORD" >/dev/null 2>&1 \
    || die "keytool could not write the truststore"
  chmod 600 "$DIR"/*.key "$DIR"/*.p12
}

write_config() {
  local jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$ADMIN_PASSWORD\";"
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas
ssl.keystore.type=PKCS12
ssl.keystore.location=$DIR/broker.keystore.p12
ssl.keystore.password=$STORE_PASSWORD
ssl.key.password=$STORE_PASSWORD
ssl.truststore.type=PKCS12
ssl.truststore.location=$DIR/broker.truststore.p12
ssl.truststore.password=$STORE_PASSWORD
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
log.dirs=$DATA
$(single_node_properties)
PROPS
  chmod 600 "$DIR/server.properties"
  {
    echo "FLEETGATE_BOOTSTRAP_SERVERS=127.0.0.1:$PORT"
    echo "FLEETGATE_SECURITY_PROTOCOL=SASL_SSL"
    echo "FLEETGATE_SASL_MECHANISM=SCRAM-SHA-512"
    echo "FLEETGATE_SASL_USERNAME=fleetgate-worker"
    echo "FLEETGATE_SASL_PASSWORD=$PASSWORD"
    echo "FLEETGATE_SSL_CA_LOCATION=$DIR/ca.pem"
  } >"$DIR/users.env"
  chmod 600 "$DIR/users.env"
}

format_storage() {
  [ -f "$DATA/meta.properties" ] && return
  local cluster_id scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]")
  for u in $USERS; do scram+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$PASSWORD]"); done
  cluster_id="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  log "formatting KRaft storage $DATA with SCRAM users: admin $USERS"
  java -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/server.properties" \
    --ignore-formatted "${scram[@]}" >"$DIR/format.log" 2>&1 || die "storage format failed, see $DIR/format.log"
}

wait_ready() {
  # Ready: an authenticated ApiVersions request over TLS succeeds (not merely an open port).
  cat >"$DIR/admin.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
ssl.truststore.type=PKCS12
ssl.truststore.location=$DIR/broker.truststore.p12
ssl.truststore.password=$STORE_PASSWORD
PROPS
  chmod 600 "$DIR/admin.properties"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  while [ $SECONDS -lt $deadline ]; do
    if port_open "$PORT" && java -cp "$LIB/*" -Dorg.slf4j.simpleLogger.defaultLogLevel=error \
      kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$PORT" \
      --command-config "$DIR/admin.properties" >/dev/null 2>&1; then
      log "ready: SASL_SSL (SCRAM-SHA-512) on 127.0.0.1:$PORT; client settings in $DIR/users.env"
      return
    fi
    if ! pid_alive "$DIR/kafka.pid"; then
      tail -n 30 "$DIR/kafka.log" >&2 || true
      die "broker exited during start-up, see $DIR/kafka.log"
    fi
    sleep 1
  done
  die "broker did not answer on 127.0.0.1:$PORT in time, see $DIR/kafka.log"
}

start() {
  # The same cached broker jars as scripts/services.sh; resolve them if this clone has none yet.
  [ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ] || "$ROOT/scripts/services.sh" jars >/dev/null
  if port_open "$PORT"; then
    log "something already listens on 127.0.0.1:$PORT, leaving it"
    return
  fi
  [ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ] || die "no Kafka jars in $LIB: run scripts/services.sh start (make services) once"
  need java "Install a Java 17+ runtime."
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  make_tls
  write_config
  format_storage
  log "starting Apache Kafka $KAFKA_VERSION, SASL_SSL on 127.0.0.1:$PORT (log $DIR/kafka.log)"
  nohup java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -Dorg.slf4j.simpleLogger.log.kafka.log=warn -Dorg.slf4j.simpleLogger.log.state.change.logger=warn \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$LIB/*" kafka.Kafka "$DIR/server.properties" >"$DIR/kafka.log" 2>&1 &
  echo $! >"$DIR/kafka.pid"
  wait_ready
}

stop() {
  if pid_alive "$DIR/kafka.pid"; then
    local pid
    pid="$(cat "$DIR/kafka.pid")"
    log "stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/kafka.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) port_open "$PORT" && echo "kafka (SASL_SSL): up on $PORT" || echo "kafka (SASL_SSL): down" ;;
  env) cat "$DIR/users.env" ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
