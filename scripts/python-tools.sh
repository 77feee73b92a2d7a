#!/usr/bin/env bash
# Installs the Python tools the tests use (schemathesis, moto's S3 server) into one venv cached
# under ~/.cache, so a fresh machine gets them and later runs reuse them. Prints the venv path.
set -euo pipefail
venv="$HOME/.cache/philo/venv"
if [ ! -x "$venv/bin/schemathesis" ] || [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'schemathesis>=4,<5' 'moto[server]>=5,<6' >&2
fi
echo "$venv"
