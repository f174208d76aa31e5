#!/usr/bin/env bash
# Run a command with the real Kafka broker, store and identity provider available, then stop what we
# started. Order: KAFKA_BOOTSTRAP_SERVERS/MONGODB_URL (and CIVICGRID_OIDC_ISSUER) from the
# environment, else the local processes.
# (The Docker path is taken by the tests themselves through testcontainers when an engine exists.)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
started=0
identity_started=0
if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" || -z "${MONGODB_URL:-}" ]]; then
  if ! $PY deploy/local/infra.py up; then
    echo "FATAL: could not start the local Kafka broker, MongoDB-protocol store and identity provider (see .run/logs)." >&2
    exit 1
  fi
  started=1
  set -a; source "${CIVICGRID_STATE_DIR:-.run}/infra.env"; set +a
elif [[ -z "${CIVICGRID_OIDC_ISSUER:-}" ]]; then
  if ! $PY deploy/local/infra.py up-identity; then
    echo "FATAL: could not start the local identity provider (see .run/logs/identity.log)." >&2
    exit 1
  fi
  identity_started=1
  set -a; source "${CIVICGRID_STATE_DIR:-.run}/identity.env"; set +a
fi
stop() {
  if [[ $started == 1 ]]; then $PY deploy/local/infra.py down; fi
  if [[ $identity_started == 1 ]]; then $PY deploy/local/infra.py down-identity; fi
}
trap stop EXIT
trap 'exit 130' INT TERM
"$@"
