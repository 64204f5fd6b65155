#!/usr/bin/env bash
# Restarts meshext.service without an outage (after an upgrade, say). systemd stops a unit before starting it
# again, so a stand-in agent with the same configuration starts first: it shares the agent's ports (SO_REUSEPORT)
# and serves while the unit restarts; once the unit's agent is ready again the stand-in drains and stops.
# Installed as /usr/local/sbin/meshext-restart by install.sh.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "meshext-restart: run as root" >&2; exit 1; }
MESHEXT_OPTS=
# shellcheck disable=SC1091
[ -r /etc/default/meshext ] && . /etc/default/meshext
standin_sock=/run/meshext/standin.sock
unit_sock=/run/meshext/admin.sock

# wait_ready SOCKET SECONDS: until the agent behind SOCKET says it is ready.
wait_ready() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    meshext probe ready --admin-socket "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "meshext-restart: the agent at $1 is not ready after $2 s" >&2
  return 1
}

# shellcheck disable=SC2086 # MESHEXT_OPTS is a list of options
systemd-run --unit=meshext-standin --collect --property=LimitNOFILE=1048576 --property=TimeoutStopSec=45 \
  /usr/local/bin/meshext run --config /etc/meshext/resources.d --state-dir /var/lib/meshext --log-format json \
  $MESHEXT_OPTS --admin-socket "$standin_sock"
if ! wait_ready "$standin_sock" 60; then
  systemctl stop meshext-standin || true
  exit 1
fi
systemctl restart meshext.service
if ! wait_ready "$unit_sock" 120; then
  echo "meshext-restart: meshext.service did not come back; the stand-in keeps serving (systemctl stop meshext-standin once fixed)" >&2
  exit 1
fi
systemctl stop meshext-standin
echo "meshext restarted without an outage"
