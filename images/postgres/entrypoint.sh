#!/bin/bash
# PostgreSQL entrypoint: initialise the cluster once, then on every start make sure the
# application role, its databases and all passwords match the mounted secrets.
set -euo pipefail
RUNTIME_DIR=/tmp/postgres
# shellcheck source=../common/lib.sh
source /usr/local/lib/mlops-kit/lib.sh

file_env POSTGRES_PASSWORD
file_env POSTGRES_APP_PASSWORD
require POSTGRES_PASSWORD "the superuser password"
require POSTGRES_APP_PASSWORD "the password of POSTGRES_APP_USER"
: "${POSTGRES_APP_USER:=mlflow}" "${POSTGRES_APP_DB:=mlflow}" "${POSTGRES_AUTH_DB=mlflow_auth}"
: "${POSTGRES_PORT:=5432}" "${POSTGRES_MAX_CONNECTIONS:=100}" "${POSTGRES_SHARED_BUFFERS:=128MB}"
require_identifier POSTGRES_APP_USER
require_identifier POSTGRES_APP_DB
[[ -z $POSTGRES_AUTH_DB ]] || require_identifier POSTGRES_AUTH_DB
require_port POSTGRES_PORT
[[ $POSTGRES_MAX_CONNECTIONS =~ ^[0-9]+$ ]] || die "POSTGRES_MAX_CONNECTIONS must be a number"
[[ $POSTGRES_SHARED_BUFFERS =~ ^[0-9]+(kB|MB|GB)?$ ]] ||
  die "POSTGRES_SHARED_BUFFERS='$POSTGRES_SHARED_BUFFERS' must look like 128MB"
[[ $POSTGRES_APP_USER != postgres ]] || die "POSTGRES_APP_USER must not be the superuser 'postgres'"

runtime_dir
nss_identity postgres /var/lib/postgresql /usr/sbin/nologin
install -d -m 0700 "$PGHOST" "$RUNTIME_DIR/bootstrap"
data_root=$(dirname "$PGDATA")
[[ -w $data_root ]] ||
  die "$data_root is not writable by UID $(id -u) GID $(id -g); mount a volume writable by group 0"

# A cluster made by another major version cannot be opened by these binaries, and starting
# them on it would only crash-loop: stop at once, change nothing, and name the way across.
[[ $(postgres -V) =~ \(PostgreSQL\)\ ([0-9]+) ]] || die "cannot tell this image's PostgreSQL version"
server_major=${BASH_REMATCH[1]}
if [[ -s $PGDATA/PG_VERSION ]]; then
  data_major=$(<"$PGDATA/PG_VERSION")
  [[ $data_major == "$server_major" ]] ||
    die "$PGDATA holds a PostgreSQL $data_major cluster and this image runs PostgreSQL $server_major, which cannot open it; nothing was changed. Run the PostgreSQL $data_major image again (POSTGRES_MAJOR in images/versions.env) and move the data by dump and restore: make backup, then a new data volume on PostgreSQL $server_major and make restore (docs/operations.md#postgresql-major-upgrade)"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  log "initialising a new cluster in $PGDATA"
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  initdb -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
    --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
  printf '%s\n' "host all all 0.0.0.0/0 scram-sha-256" "host all all ::/0 scram-sha-256" \
    >>"$PGDATA/pg_hba.conf"
fi
[[ -O $PGDATA ]] || die "$PGDATA belongs to UID $(stat -c %u "$PGDATA"), not to the running UID $(id -u); run with the UID that created it"
# Kubernetes fsGroup handling may have made it group-writable; PostgreSQL refuses to start then.
chmod 0700 "$PGDATA"

# Bootstrap: a socket-only server in a separate directory, so the health check stays red.
export PGPASSWORD=$POSTGRES_PASSWORD POSTGRES_APP_USER POSTGRES_APP_DB POSTGRES_AUTH_DB \
  POSTGRES_APP_PASSWORD POSTGRES_PASSWORD
pg_ctl -D "$PGDATA" -w -t 60 -l "$RUNTIME_DIR/bootstrap.log" \
  -o "-c listen_addresses='' -c unix_socket_directories=$RUNTIME_DIR/bootstrap" start >/dev/null ||
  { cat "$RUNTIME_DIR/bootstrap.log" >&2; die "the bootstrap server did not start"; }
# Passwords travel through the environment and psql's \getenv, never through argv.
psql -q -X -v ON_ERROR_STOP=1 -h "$RUNTIME_DIR/bootstrap" -U postgres -d postgres <<'SQL'
\getenv superuser_password POSTGRES_PASSWORD
\getenv app_user POSTGRES_APP_USER
\getenv app_password POSTGRES_APP_PASSWORD
\getenv app_db POSTGRES_APP_DB
\getenv auth_db POSTGRES_AUTH_DB
SET client_min_messages = warning;
ALTER ROLE postgres PASSWORD :'superuser_password';
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN PASSWORD :'app_password';
SELECT format('CREATE DATABASE %I OWNER %I', d, :'app_user')
  FROM unnest(ARRAY[:'app_db', NULLIF(:'auth_db', '')]) AS d
  WHERE d IS NOT NULL AND NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
SQL
pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
unset PGPASSWORD POSTGRES_PASSWORD POSTGRES_APP_PASSWORD

log "starting PostgreSQL on port $POSTGRES_PORT"
postgres -D "$PGDATA" -c listen_addresses='*' -c port="$POSTGRES_PORT" \
  -c unix_socket_directories="$PGHOST" \
  -c max_connections="$POSTGRES_MAX_CONNECTIONS" -c shared_buffers="$POSTGRES_SHARED_BUFFERS" \
  -c password_encryption=scram-sha-256 -c logging_collector=off -c log_destination=stderr &
pid=$!
# SIGTERM (docker stop, Kubernetes) becomes a fast shutdown: roll back sessions, checkpoint, exit.
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || status=$?; done
exit "$status"
