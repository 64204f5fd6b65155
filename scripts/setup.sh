#!/usr/bin/env bash
# Everything a fresh Debian machine needs before `npm start` or `npm test`:
# system packages, npm packages, and the TypeScript, native addon and BPF builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# Node.js itself is the machine's: Debian 12's own nodejs is 18, older than package.json's engines.node.
need=20.18
have=$(node -p 'process.versions.node' 2>/dev/null || echo none)
if [ "$have" = none ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "setup.sh: meshext needs Node.js >= $need (package.json engines.node); found: $have." >&2
  echo "setup.sh: install Node.js 20 (e.g. the NodeSource nodejs 20.x package), then run this again." >&2
  exit 1
fi
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
"${sudo_cmd[@]}" bash scripts/install-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
