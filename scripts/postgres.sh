# Sourced by scripts/test: makes sure a PostgreSQL server answers on 127.0.0.1:5432 and
# exports TEST_POSTGRES_URL for the test suite. Uses the server that is already running;
# otherwise starts the installed cluster; otherwise installs PostgreSQL from the system's
# package manager (Debian/Ubuntu) and starts it. Leftover test databases are dropped.

pg_url_ok() {
  psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

pg_start_cluster() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  fi
}

pg_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: PostgreSQL is not running and apt-get is unavailable; set TEST_POSTGRES_URL" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "postgres.sh: installing PostgreSQL" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql postgresql-client >/dev/null
}

pg_wait() {
  for _ in $(seq 1 50); do
    pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

ensure_postgres() {
  if [ -n "${TEST_POSTGRES_URL:-}" ]; then
    pg_url_ok "$TEST_POSTGRES_URL" && return 0
    echo "postgres.sh: TEST_POSTGRES_URL is set but does not answer" >&2
    return 1
  fi
  if ! command -v psql >/dev/null 2>&1 || ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    pg_start_cluster
    if ! pg_wait; then
      pg_install
      pg_start_cluster
      pg_wait || { echo "postgres.sh: PostgreSQL did not start" >&2; return 1; }
    fi
  fi
  local url="postgres://postgres@127.0.0.1:5432/postgres"
  if ! pg_url_ok "$url"; then
    # A fresh Debian cluster refuses passwordless TCP logins: give the postgres role a
    # password through the local socket and use it.
    url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
    if ! pg_url_ok "$url"; then
      if [ "$(id -u)" -eq 0 ]; then
        su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
      else
        sudo -u postgres psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
      fi
    fi
    pg_url_ok "$url" || { echo "postgres.sh: cannot log in to PostgreSQL on 127.0.0.1:5432" >&2; return 1; }
  fi
  export TEST_POSTGRES_URL="$url"
  # Drop databases left by earlier runs (each test creates its own).
  psql "$url" -Atqc "select datname from pg_database where datname like 'sv_test_%'" |
    while read -r db; do psql "$url" -qc "drop database if exists \"$db\"" >/dev/null 2>&1 || true; done
}
