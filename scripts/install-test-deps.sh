#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine: the package with its test extras at the
# exact versions of requirements/test.lock (what CI tested), and the system programs the tests start themselves
# (mosquitto for MQTT, chromium for the dashboard, PostgreSQL's server binaries for the PostgreSQL storage tests,
# which start their own private cluster and never use the machine's own service). Run it inside a virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -c requirements/test.lock -e ".[test,fast]"

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages) for the tests"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
