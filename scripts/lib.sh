# Shared helpers for scripts/test and scripts/bench: install what the tests need when it is
# missing (Debian packages, a Python virtual environment), and start/stop a throw-away
# PostgreSQL server. Sourced, not run.

musubi_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

apt_updated=0
need_packages() {
  # need_packages CMD PACKAGE [CMD PACKAGE …]: installs PACKAGE when CMD is missing.
  local missing=()
  while [ $# -ge 2 ]; do
    command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing ${missing[*]} (Debian packages)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ $apt_updated -eq 0 ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

# A throw-away CA and a server certificate for localhost / 127.0.0.1 in DIR (openssl command),
# plus a second, unrelated CA (other-ca.pem) for the "wrong root is refused" test.
pg_tls_certs() {
  local dir=$1
  need_packages openssl openssl
  mkdir -p "$dir"
  local ca
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Musubi test $ca" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$dir/$ca.key" -out "$dir/$ca.pem" 2>/dev/null
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  chmod 600 "$dir/server.key"
}

# A facility's client certificate DIR/NAME.pem (+ .key) signed by DIR/ca.pem: the 10-digit
# 医療機関コード in the subject serialNumber, as `musubi serve --client-ca` expects.
tls_client_cert() {
  local dir=$1 name=$2 facility=$3
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name/serialNumber=$facility" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
  chmod 600 "$dir/$name.key"
}

# Starts PostgreSQL in a temporary directory on a free port, with TLS on (a generated CA);
# exports MUSUBI_TEST_POSTGRES (plain, loopback) and MUSUBI_TEST_POSTGRES_TLS (the same server
# with sslmode=verify-full against the generated CA).
pg_start() {
  pg_bin >/dev/null || need_packages /usr/lib/postgresql/15/bin/initdb postgresql
  local bin; bin=$(pg_bin) || { echo "PostgreSQL could not be installed" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/musubi-pg.XXXXXX)
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local run_as=()
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root: use the postgres user the package created.
    id postgres >/dev/null 2>&1 || useradd --system --home "$PG_DIR" postgres
    chown postgres "$PG_DIR"
    run_as=(runuser -u postgres --)
  fi
  pg_tls_certs "$PG_DIR/tls"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$PG_DIR/tls"
  "${run_as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U musubi --auth=trust -E UTF8 --locale=C >/dev/null
  "${run_as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c ssl=on -c ssl_cert_file=$PG_DIR/tls/server.pem -c ssl_key_file=$PG_DIR/tls/server.key" start >/dev/null
  export MUSUBI_TEST_POSTGRES="postgres://musubi@127.0.0.1:$PG_PORT/postgres"
  export MUSUBI_TEST_POSTGRES_TLS="postgres://musubi@localhost:$PG_PORT/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=$PG_DIR/tls/ca.pem"
  export PG_BIN="$bin" PG_DIR PG_PORT
  echo "==> PostgreSQL running on port $PG_PORT"
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  local run_as=()
  [ "$(id -u)" -eq 0 ] && run_as=(runuser -u postgres --)
  "${run_as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=""
}

# A Python virtual environment with the test clients; exports MUSUBI_PYTHON.
python_env() {
  local root; root=$(musubi_root)
  local venv="$root/.venv"
  if ! "$venv/bin/python" -c 'import fhirpy, hl7' >/dev/null 2>&1; then
    python3 -m venv "$venv" 2>/dev/null || { need_packages python3-venv python3-venv; python3 -m venv "$venv"; }
    echo "==> installing the Python test clients (PyPI)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
  fi
  export MUSUBI_PYTHON="$venv/bin/python"
}
