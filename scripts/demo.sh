#!/usr/bin/env bash
# The runbook's story, end to end, on SQLite and the local Zoho emulator (no credentials):
# 13 customers, Zoho blocks the organization after the tenth, 3 fail, a dry run lists them,
# the retry waits out the block by itself, and verify finds 13 synced and 0 duplicates.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${DEMO_PORT:-8765}
BLOCK_SECONDS=${DEMO_BLOCK_SECONDS:-15}   # Zoho blocks for ~10 minutes; scaled down here

mkdir -p var
rm -f var/demo.sqlite3 var/demo.sqlite3-wal var/demo.sqlite3-shm
export DATABASE_URL="sqlite:///$PWD/var/demo.sqlite3"
# The emulator's dummy credentials: never real ones.
export ZOHO_CLIENT_ID=emulator-client-id
export ZOHO_CLIENT_SECRET=emulator-client-secret
export ZOHO_REFRESH_TOKEN=emulator-refresh-token
export ZOHO_ORGANIZATION_ID=6179546000000027001
export ZOHO_ACCOUNTS_URL="http://127.0.0.1:$PORT"
export ZOHO_API_BASE_URL="http://127.0.0.1:$PORT/billing/v1"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Set up: migrate SQLite, import the 13 CircleTel customers (+2 internal_test) from a CSV file"
$PY manage.py migrate -v 0
$PY manage.py import_customers billing_sync/demo/customers.csv

step "Start the Zoho emulator: the organization's quota is used up after 11 requests"
$PY manage.py zoho_emulator --port "$PORT" --rate-limit-requests 11 --rate-limit-window 10 \
  --block-seconds "$BLOCK_SECONDS" >var/emulator.log 2>&1 &
EMULATOR_PID=$!
trap 'kill $EMULATOR_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  $PY -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  sleep 0.2
done

step "1. Backfill with --max-wait 0 (stop at the first block, as the old scripts did)"
echo "   Our budget (30/min) is more than this organization has left, so Zoho blocks us"
echo "   after the tenth customer. Without --max-wait 0 the run would simply wait it out."
$PY manage.py zoho_backfill_customers --max-wait 0 || echo "   (exit code $?: 3 customers left failed, as in the runbook)"

step "2. zoho_retry_failed --dry-run: what a retry would do, sending nothing"
$PY manage.py zoho_retry_failed --dry-run

step "3. zoho_retry_failed: waits for the block to end by itself, then syncs"
$PY manage.py zoho_retry_failed

step "4. zoho_verify --deep: the runbook's SQL and dashboard checks, paced under the real quota"
ZOHO_RATE_LIMIT_REQUESTS=10 ZOHO_RATE_LIMIT_WINDOW_SECONDS=10 $PY manage.py zoho_verify --deep

step "The runbook's own SQL, unchanged"
$PY manage.py shell -v 0 <<'PY'
from django.db import connection

SQL = """SELECT zoho_sync_status, COUNT(*) as count FROM customers
WHERE account_type != 'internal_test' GROUP BY zoho_sync_status;"""
with connection.cursor() as cursor:
    cursor.execute(SQL)
    print("zoho_sync_status | count")
    for status, count in cursor.fetchall():
        print(f"{status:<16} | {count}")
PY
