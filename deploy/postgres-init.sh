#!/bin/sh
# One database and one role per service; each service can reach only its own store.
set -eu
for svc in intake housing referrals notify; do
  pw_var=$(echo "${svc}_DB_PASSWORD" | tr '[:lower:]' '[:upper:]')
  eval pw=\${$pw_var}
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE ${svc} LOGIN PASSWORD '${pw}';
CREATE DATABASE ${svc} OWNER ${svc};
REVOKE ALL ON DATABASE ${svc} FROM PUBLIC;
SQL
done
# Intake's per-person data keys, kept apart from intake's data.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE DATABASE intake_keys OWNER intake;
REVOKE ALL ON DATABASE intake_keys FROM PUBLIC;
SQL
