#!/bin/sh
# The release step, before web and workers start on every deploy (the Procfile's `release`,
# docker-compose.yml's `release` service): bring the tables up to date (the cluster-status cache
# table included) and put the zoho-sync schedule in place. Both are idempotent.
set -eu
cd "$(dirname "$0")/.."
python manage.py migrate --noinput
python manage.py zoho_schedule
