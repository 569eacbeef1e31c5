#!/bin/bash
# The secure profile's broker in the apache/kafka image (`docker compose --profile secure`).
# Its configuration and SCRAM users come from var/secure/docker/, written by
# `fleet infra init --secure` (fleet/secure_profile.py), mounted at /fleet/secure.
set -euo pipefail
conf=/fleet/secure/docker
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  mapfile -t scram < "$conf/format.args"
  /opt/kafka/bin/kafka-storage.sh format --standalone -c "$conf/server.properties" \
    -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" "${scram[@]}"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf/server.properties"
