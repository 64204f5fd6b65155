#!/usr/bin/env bash
# Installs the Debian packages meshext needs to build, run and test. Idempotent: only missing
# packages are installed, so a second run is a quick no-op.
set -euo pipefail

PKGS=(
  # build: BPF objects, native addon
  clang llvm libbpf-dev libelf-dev zlib1g-dev libnghttp2-dev linux-libc-dev bpftool make cmake g++ pkg-config libssl-dev
  # runtime and tests: netns/veth, certificates, DNS and HTTP clients
  iproute2 openssl ca-certificates bind9-dnsutils curl netcat-openbsd procps util-linux python3
  # peers for tests and benchmarks
  dnsmasq-base dnsperf haproxy nginx-light libnginx-mod-stream wrk nghttp2-client
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (it installs Debian packages); try: sudo $0" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1 || ! grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; then
  echo "install-deps: only Debian/Ubuntu are supported (no apt-get or not a Debian-like /etc/os-release)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Peers are installed as tools only: never let their packages start system services.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
