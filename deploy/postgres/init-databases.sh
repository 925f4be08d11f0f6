#!/bin/bash
# Runs once, on the first start of an empty PostgreSQL volume (docker-entrypoint-initdb.d):
# one role and one database per service, each role owning only its own database, so a
# leaked service password exposes one bounded context, not all three.
set -euo pipefail

# Every password first: fail before creating anything rather than half-way through.
: "${AUTH_DB_PASSWORD:?AUTH_DB_PASSWORD is required}"
: "${CLINIC_DB_PASSWORD:?CLINIC_DB_PASSWORD is required}"
: "${TENANTS_DB_PASSWORD:?TENANTS_DB_PASSWORD is required}"

create_service_database() {
    local name="$1" password="$2"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$name" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SQL
}

# The names are the service names unless overridden (the role and the database share it).
create_service_database "${AUTH_DB_NAME:-auth}" "$AUTH_DB_PASSWORD"
create_service_database "${CLINIC_DB_NAME:-clinic}" "$CLINIC_DB_PASSWORD"
create_service_database "${TENANTS_DB_NAME:-tenants}" "$TENANTS_DB_PASSWORD"
