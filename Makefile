# muster — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/muster-target
CARGO ?= cargo
# Integration tests start real processes; two at a time suits a 2-core machine.
TEST_THREADS ?= 2

.PHONY: run test unit interop bench fuzz lint fmt deps build release clean cluster-test jepsen \
	install deploy undeploy status monitor start-mdns start-serf start-tailscale logs ps \
	test-discovery test-integration emergency-stop check-serf-join

# Operating a node and the local demo cluster (see README, "Operating a fleet").
PREFIX ?= /usr/local
COMPOSE ?= docker-compose
CLUSTER_FILE := docker/cluster.yml
CLUSTER := $(COMPOSE) -f $(CLUSTER_FILE)
# What docker/cluster.yml defines: its nodes and node1's API.
CLUSTER_NODES := node1 node2 node3
CLUSTER_API := 127.0.0.1:19991
DEPLOY_TIMEOUT ?= 90
RELEASE_BIN = $(CARGO_TARGET_DIR)/release/muster
# The local node's data dir, as startup.sh uses it.
MUSTER_DATA_DIR ?= ./data
# start-* build the release binary first unless MUSTER_BIN names one.
START_DEPS := $(if $(MUSTER_BIN),,release)
# Gossip keys made once by `muster keygen` (mode 0600, never committed): `make run`'s node
# (the lan profile refuses to start without one) and the `make deploy` cluster's.
RUN_KEY := data/gossip.key
CLUSTER_KEY := docker/gossip.key

## run: one node with embedded defaults (data in ./data, created on start); its gossip key is
## made once by `muster keygen` into ./data/gossip.key (mode 0600) and passed as MUSTER_ENCRYPT
run: release $(RUN_KEY)
	MUSTER_ENCRYPT="$$(cat $(RUN_KEY))" $(RELEASE_BIN) agent --data-dir ./data

## test: everything — unit tests, in-process tests and interop against the real `serf` agent
## (debug builds: one profile to compile, and fast enough for every timing the tests use), then
## the Docker smoke set of cluster-tests/ (`make cluster-test`, about 30 s)
test: deps
	$(CARGO) build --bin muster
	MUSTER_BIN=$(CARGO_TARGET_DIR)/debug/muster $(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)
	$(MAKE) cluster-test

## cluster-test: the cluster-tests/ crate: its checkers' unit tests, then the Docker smoke set
## (3 nodes with stacks from the muster:dev image of the debug build; leader isolation, kill,
## pause, a hung leader; every checker; about a minute). Needs root, Docker, nsenter and iptables. Replay a run with MUSTER_CT_SEED=<seed>;
## reports go to target/cluster-tests/<seed>-<time>/. The last step of `make test`.
cluster-test:
	$(CARGO) build --bin muster
	scripts/mkimage.sh $(CARGO_TARGET_DIR)/debug/muster
	$(CARGO) test -p cluster-tests -- --test-threads=1 --nocapture

## jepsen: a long cluster-tests run (cluster-tests/tests/jepsen.rs): NODES nodes (5) with stacks,
## the full workload, faults drawn from SEED (empty: a new one) out of NEMESIS (comma separated,
## or all: isolate split bridge one-way loss kill pause freeze rolling-restart membership) for
## TIME seconds (600); every checker; the report in target/cluster-tests/<seed>-<time>/
SEED ?=
TIME ?= 600
NEMESIS ?= all
NODES ?= 5
jepsen: deps
	$(CARGO) build --bin muster
	scripts/mkimage.sh $(CARGO_TARGET_DIR)/debug/muster
	MUSTER_CT_SEED="$(SEED)" MUSTER_CT_TIME="$(TIME)" MUSTER_CT_NEMESIS="$(NEMESIS)" MUSTER_CT_NODES="$(NODES)" \
		$(CARGO) test -p cluster-tests --test jepsen -- --ignored --nocapture

## unit: the pure cores' tests only (no processes, no network)
unit:
	$(CARGO) test --lib

## bench: whole-cluster timings of muster vs. serf agents on 127.0.0.1 (see scripts/bench.sh),
## then the in-process 3-node raft cluster: commits/s, failover, the disk's fsync floor
## (see benches/raft.rs), then muster against a 3-member etcd cluster (see benches/vs_etcd.rs),
## then the log tee's cost per event (see benches/log_tee.rs)
bench: deps release
	MUSTER_BIN=$(CARGO_TARGET_DIR)/release/muster scripts/bench.sh
	$(CARGO) bench --bench raft
	BENCH_ETCD=1 scripts/deps.sh
	$(CARGO) bench --bench vs_etcd
	$(CARGO) bench --bench log_tee

## fuzz: the cargo-fuzz targets in fuzz/ (gossip_packet, gossip_stream, serf_rpc, rest_json,
## raft_rpc), one after the other, FUZZ_TIME seconds each (600), one worker, -rss_limit_mb=2048,
## -timeout=10; prints target, seconds, execs and crashes, and fails naming the saved input
## (fuzz/artifacts/<target>/) when one crashed, hung or ran out of memory. Installs cargo-fuzz
## when missing. A subset: make fuzz FUZZ_TARGETS=serf_rpc,rest_json
FUZZ_TIME ?= 600
FUZZ_TARGETS ?=
fuzz:
	FUZZ_TIME="$(FUZZ_TIME)" FUZZ_TARGETS="$(FUZZ_TARGETS)" fuzz/run.sh

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

deps:
	scripts/deps.sh

release:
	$(CARGO) build --release --bin muster

# A gossip key file, made once: written under umask 077 and renamed into place, so it is 0600
# and never half-written; an existing key is kept.
$(RUN_KEY) $(CLUSTER_KEY): | release
	@mkdir -p $(dir $@)
	@(umask 077 && $(RELEASE_BIN) keygen > $@.tmp) && mv $@.tmp $@
	@echo "made a gossip key in $@ (keep it secret; every node of the cluster needs it)"

build:
	$(CARGO) build

clean:
	$(CARGO) clean

## install: release build, installed as $(PREFIX)/bin/muster (PREFIX=/usr/local; DESTDIR honoured)
install: release
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/muster
	@echo "installed $(DESTDIR)$(PREFIX)/bin/muster"

## deploy: the local 3-node cluster of docker/cluster.yml: release build, the muster:dev image
## from it, the cluster's gossip key (made once into docker/gossip.key), `docker-compose up -d`,
## then waits (DEPLOY_TIMEOUT=90 s) for node1's /health
deploy: release $(CLUSTER_KEY)
	scripts/mkimage.sh $(RELEASE_BIN)
	MUSTER_DEMO_GOSSIP_KEY="$$(cat $(CLUSTER_KEY))" $(CLUSTER) up -d
	@echo "waiting up to $(DEPLOY_TIMEOUT)s for http://$(CLUSTER_API)/health"
	@deadline=$$((SECONDS + $(DEPLOY_TIMEOUT))); \
	until curl -fsS --max-time 2 -o /dev/null http://$(CLUSTER_API)/health 2>/dev/null; do \
		if [ $$SECONDS -ge $$deadline ]; then \
			echo "deploy: node1 did not answer within $(DEPLOY_TIMEOUT)s; see '$(CLUSTER) logs'" >&2; \
			exit 1; \
		fi; \
		sleep 1; \
	done
	$(RELEASE_BIN) status --addr $(CLUSTER_API)
	@echo "the server's stack starts after its lock delay (about 12 s): 'make ps'"

## undeploy: removes the deploy cluster: its containers, network and volumes, and the stack
## containers and networks its nodes left
undeploy:
	$(CLUSTER) down -v --remove-orphans
	@for node in $(CLUSTER_NODES); do \
		ids=$$(docker ps -aq --filter label=muster.node=$$node); \
		if [ -n "$$ids" ]; then \
			echo "removing the containers $$node left:" \
				$$(docker ps -a --filter label=muster.node=$$node --format '{{.Names}}'); \
			docker rm -f -v $$ids >/dev/null; \
		fi; \
		nets=$$(docker network ls -q --filter label=muster.node=$$node); \
		if [ -n "$$nets" ]; then \
			echo "removing the networks of $$node:" \
				$$(docker network ls --filter label=muster.node=$$node --format '{{.Name}}'); \
			docker network rm $$nets >/dev/null; \
		fi; \
	done

## status: the local node's status and stack (./startup.sh status)
status:
	./startup.sh status

## monitor: the local node's status every 2 s until Ctrl-C (./startup.sh monitor)
monitor:
	./startup.sh monitor

## start-mdns: start the local node, finding peers by mDNS (./startup.sh start)
start-mdns: $(START_DEPS)
	DISCOVERY_BACKEND=mdns ./startup.sh start

## start-serf: start the local node, joining SERF_JOIN=host[:port],... (required)
start-serf: check-serf-join $(START_DEPS)
	DISCOVERY_BACKEND=serf SERF_JOIN="$(SERF_JOIN)" ./startup.sh start

# Before any build: start-serf without SERF_JOIN is a mistake.
check-serf-join:
	@if [ -z "$(SERF_JOIN)" ]; then \
		echo "start-serf: set SERF_JOIN to the members to join, e.g. make start-serf SERF_JOIN=10.0.0.5,10.0.0.6:7946" >&2; \
		exit 1; \
	fi

## start-tailscale: start the local node, finding peers in `tailscale status`
start-tailscale: $(START_DEPS)
	DISCOVERY_BACKEND=tailscale ./startup.sh start

## logs: the last 100 lines of the local node's log, and of the deploy cluster when it runs
logs:
	@if [ -f "$(MUSTER_DATA_DIR)/muster.log" ]; then \
		echo "== $(MUSTER_DATA_DIR)/muster.log"; tail -n 100 "$(MUSTER_DATA_DIR)/muster.log"; \
	else \
		echo "no local node log at $(MUSTER_DATA_DIR)/muster.log"; \
	fi
	@if [ -n "$$($(CLUSTER) ps -q 2>/dev/null)" ]; then \
		echo "== $(CLUSTER_FILE)"; $(CLUSTER) logs --no-color --tail=100; \
	fi

## ps: the containers muster runs on this engine (every node's stacks)
ps:
	@docker ps -a --filter label=muster.node \
		--format 'table {{.Names}}\t{{.Label "muster.node"}}\t{{.Label "muster.stack"}}\t{{.Label "muster.epoch"}}\t{{.Status}}'

## test-discovery: GET /discovery of the local node (or MUSTER_ADDR=host:port), pretty-printed;
## fails when that node knows no server
test-discovery:
	@command -v jq >/dev/null || { echo "test-discovery: needs jq" >&2; exit 1; }
	@set -euo pipefail; \
	addr="$(MUSTER_ADDR)"; \
	if [ -z "$$addr" ]; then \
		addr=$$(cat "$(MUSTER_DATA_DIR)/muster.addr" 2>/dev/null || echo 127.0.0.1:9999); \
	fi; \
	body=$$(curl -fsS --max-time 5 "http://$$addr/discovery") \
		|| { echo "test-discovery: no answer from http://$$addr/discovery" >&2; exit 1; }; \
	echo "$$body" | jq .; \
	server=$$(echo "$$body" | jq -r 'if .mode == "server" then "\(.node_id) (this node)" else ([.discovered_servers[] | select(.mode == "server") | "\(.node_id) at \(.host):\(.port)"] | first // empty) end'); \
	if [ -z "$$server" ]; then echo "test-discovery: the node at $$addr knows no server" >&2; exit 1; fi; \
	echo "server: $$server"

## test-integration: the integration tests that use Docker and real clusters
test-integration:
	$(CARGO) build --bin muster
	MUSTER_BIN=$(CARGO_TARGET_DIR)/debug/muster $(CARGO) test --test supervisor_docker \
		--test supervisor_cluster --test supervisor_partition --test failover_writes -- --test-threads=$(TEST_THREADS)

## emergency-stop: stops the local node (./startup.sh stop) and the deploy cluster's nodes, then
## force-removes every container labelled muster.node on this engine (and muster's unused
## networks); containers without that label are not touched
emergency-stop:
	-./startup.sh stop
	@if [ -n "$$($(CLUSTER) ps -q 2>/dev/null)" ]; then $(CLUSTER) kill; fi
	@ids=$$(docker ps -aq --filter label=muster.node); \
	if [ -z "$$ids" ]; then \
		echo "emergency-stop: no muster containers on this engine"; \
	else \
		echo "emergency-stop: force-removing:"; \
		docker ps -a --filter label=muster.node --format '  {{.Names}} ({{.Label "muster.node"}}, {{.Label "muster.stack"}} stack, {{.Status}})'; \
		docker rm -f -v $$ids >/dev/null; \
	fi; \
	for net in $$(docker network ls --filter label=muster.node --format '{{.Name}}'); do \
		if docker network rm "$$net" >/dev/null 2>&1; then echo "emergency-stop: removed network $$net"; fi; \
	done
