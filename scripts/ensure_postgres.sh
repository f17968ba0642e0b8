#!/usr/bin/env bash
# Make sure the PostgreSQL server the tests use is up at 127.0.0.1:5432 with database `test`
# (trust auth). On this kind of machine it normally runs already; otherwise start the
# installed cluster, and install Debian's postgresql package if there is none. Never skips:
# if PostgreSQL cannot be made available this script fails, and so does `make test`.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

ready() { pg_isready -h "$HOST" -p "$PORT" -q 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "ensure_postgres: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

if ! ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Trust auth on loopback, as the tests expect (only when we started the cluster ourselves).
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  echo "ensure_postgres: starting cluster $version/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi

ready || { echo "ensure_postgres: PostgreSQL is not reachable at $HOST:$PORT" >&2; exit 1; }

if ! psql -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1; then
  psql -h "$HOST" -p "$PORT" -U postgres -d postgres -c "create database test" >/dev/null
fi
echo "ensure_postgres: PostgreSQL ready at $HOST:$PORT/test" >&2
