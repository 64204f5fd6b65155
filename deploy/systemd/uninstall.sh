#!/usr/bin/env bash
# Stops the agent and removes every BPF link, pinned map and cgroup it made (`meshext cleanup`).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run as root" >&2; exit 1; }
systemctl disable --now meshext.service meshext.socket 2>/dev/null || true
/usr/local/bin/meshext cleanup || true
rm -f /etc/systemd/system/meshext.service /etc/systemd/system/meshext.socket /usr/local/bin/meshext
systemctl daemon-reload
echo "meshext removed; /etc/meshext and /var/lib/meshext are kept"
