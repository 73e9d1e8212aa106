#!/usr/bin/env bash
# Installs the Debian packages Herald needs to build, test and benchmark, if
# missing. Usage: scripts/deps.sh [build|test|bench]
set -euo pipefail
want=(build-essential cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev
      libsqlite3-dev libjansson-dev libssl-dev libfyaml-dev libjwt-dev libcmocka-dev curl
      openssl ca-certificates)
case "${1:-build}" in
  bench) want+=(wrk nginx-light sqlite3) ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
