# Shared by scripts/services.sh and scripts/sasl.sh (sourced, not run): paths, the pinned
# Kafka version and small helpers.  Set LOG_TAG before sourcing.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FLEETGATE_CACHE:-$ROOT/.cache}"
RUN="${FLEETGATE_RUN:-$CACHE/run}"
KAFKA_VERSION="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka-pom.xml")}"
LIB="$CACHE/kafka/lib-$KAFKA_VERSION"

log() { printf '[%s] %s\n' "${LOG_TAG:-fleetgate}" "$*" >&2; }
die() { log "error: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing. $2"; }

# Settings every single-node (combined broker + controller) test broker needs.
single_node_properties() {
  cat <<'PROPS'
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
PROPS
  # On by default; a test that needs a topic to stay missing sets KAFKA_AUTO_CREATE_TOPICS=false.
  echo "auto.create.topics.enable=${KAFKA_AUTO_CREATE_TOPICS:-true}"
}

# A replicated cluster (KAFKA_BROKERS >= 3): what production needs (docs/operations.md).
cluster_properties() {
  cat <<'PROPS'
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
}
