#!/bin/sh
# Writes server.properties from the KAFKA_* variables, formats the log dir once, runs the broker.
set -eu
props=/opt/kafka/config/server.properties
: > "$props"
env | grep '^KAFKA_' | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_OPTS) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' \
        | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
  printf '%s=%s\n' "$key" "$value" >> "$props"
done
run() {
  # shellcheck disable=SC2086  # the heap options are words
  java ${KAFKA_HEAP_OPTS} -XX:+UseG1GC ${KAFKA_OPTS:-} \
    -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties -cp '/opt/kafka/libs/*' "$@"
}
if [ ! -f "${KAFKA_LOG_DIRS}/meta.properties" ]; then
  run kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$props"
fi
# the JVM is the container's first process: SIGTERM starts its controlled shutdown
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS} -XX:+UseG1GC ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties -cp '/opt/kafka/libs/*' \
  kafka.Kafka "$props"
