#!/usr/bin/env bash
# Host install (Universal mode): copies this checkout to /opt/meshext, installs the units and
# enables the agent. Run from a checkout after ./scripts/setup.sh has built it.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
for f in dist/src/cli/main.js native/build/Release/meshext_native.node bpf/redirect.bpf.o; do
  [ -e "$src/$f" ] || { echo "install.sh: $f missing: run ./scripts/setup.sh first" >&2; exit 1; }
done
mkdir -p /opt/meshext /etc/meshext/resources.d
rsync -a --delete --exclude .git --exclude .state "$src/" /opt/meshext/ 2>/dev/null || cp -a "$src/." /opt/meshext/
ln -sf /opt/meshext/bin/meshext.js /usr/local/bin/meshext
install -m 0644 "$src/deploy/systemd/meshext.service" /etc/systemd/system/meshext.service
install -m 0644 "$src/deploy/systemd/meshext.socket" /etc/systemd/system/meshext.socket
install -m 0644 "$src/deploy/systemd/sys-fs-bpf.mount" /etc/systemd/system/sys-fs-bpf.mount
[ -e /etc/default/meshext ] || install -m 0644 "$src/deploy/systemd/meshext.default" /etc/default/meshext
systemctl daemon-reload
systemctl enable --now sys-fs-bpf.mount meshext.socket meshext.service
echo "meshext installed: put resources in /etc/meshext/resources.d (reloaded on change), status: curl -s 127.0.0.1:9901/ready"
