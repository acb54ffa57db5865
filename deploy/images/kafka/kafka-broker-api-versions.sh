#!/bin/sh
# As in the Kafka distribution: kafka-broker-api-versions.sh --bootstrap-server HOST:PORT
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties \
  -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
