#!/usr/bin/env bash
# Installs the Debian packages Herald needs to build, test and benchmark, if
# missing. Usage: scripts/deps.sh [build|test|bench|fuzz]
set -euo pipefail
want=(build-essential cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev
      libsqlite3-dev libjansson-dev libssl-dev libfyaml-dev libjwt-dev libcmocka-dev curl libcrypt-dev
      openssl ca-certificates libpq-dev libphonenumber-dev libpcre2-dev libzip-dev libexpat1-dev libxlsxwriter-dev
      libmariadb-dev unixodbc-dev
      libjsmn-dev) # jsmn.h, the tokenizer of src/core/jsonr.c
case "${1:-build}" in
  # The tests start their own PostgreSQL servers from the server package's
  # binaries (tests/pgtest.c: /usr/lib/postgresql/N/bin, off the PATH).
  # The data-source tests also start MariaDB servers (mariadb-server) and
  # reach PostgreSQL through unixODBC with psqlODBC (odbc-postgresql). The
  # dashboard's browser tests (tests/browser/run.sh): Node.js and npm fetch
  # playwright-core and axe-core at test time; Debian's chromium is the
  # browser (no browser download).
  test) want+=(postgresql mariadb-server odbc-postgresql nodejs npm chromium nginx-light) ;;
  bench) want+=(wrk nginx-light sqlite3 postgresql kannel linux-perf xlsx2csv) ;;
  # The libFuzzer targets (scripts/fuzz.sh): clang with its libFuzzer and
  # sanitizer runtimes (libclang-rt-14-dev is only recommended by clang-14,
  # and we install without recommends). Only the fuzzing step needs them.
  fuzz) want+=(clang libclang-rt-14-dev) ;;
esac
missing=()
for p in "${want[@]}"; do
  # Node.js from elsewhere (NodeSource's nodejs bundles npm and conflicts
  # with Debian's npm package): any working node and npm will do.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  apt_install() {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
  }
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    # Installed for the first time, the server package creates a "main"
    # cluster and (where systemd or an init script may start it) runs it on
    # port 5432. Nothing here uses it, so ask for none: postgresql-common
    # reads create_main_cluster from createcluster.conf when the server
    # package is configured, so install it first and turn that off.
    dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null | grep -q "install ok installed" ||
      apt_install postgresql-common
    $SUDO pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster false
  fi
  apt_install "${missing[@]}"
fi
