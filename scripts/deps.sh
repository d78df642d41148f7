#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian's `serf` (the real Go agent the interop
# tests run against), iproute2 (network namespaces for the mDNS test) and curl.
set -euo pipefail

need=()
command -v serf >/dev/null 2>&1 || need+=(serf)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "deps: serf $(serf version 2>/dev/null | head -1 | awk '{print $2}'), $(ip -V 2>/dev/null)"
