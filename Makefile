# muster — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/muster-target
CARGO ?= cargo
# Integration tests start real processes; two at a time suits a 2-core machine.
TEST_THREADS ?= 2

.PHONY: run test unit interop bench lint fmt deps build release clean

## run: one node with embedded defaults (data in ./data, created on start)
run: release
	$(CARGO_TARGET_DIR)/release/muster agent --data-dir ./data

## test: everything — unit tests, in-process tests and interop against the real `serf` agent
## (debug builds: one profile to compile, and fast enough for every timing the tests use)
test: deps
	$(CARGO) build --bin muster
	MUSTER_BIN=$(CARGO_TARGET_DIR)/debug/muster $(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)

## unit: the pure cores' tests only (no processes, no network)
unit:
	$(CARGO) test --lib

## bench: whole-cluster timings of muster vs. serf agents on 127.0.0.1 (see scripts/bench.sh),
## then the in-process 3-node raft cluster: commits/s, failover, the disk's fsync floor
## (see benches/raft.rs), then muster against a 3-member etcd cluster (see benches/vs_etcd.rs)
bench: deps release
	MUSTER_BIN=$(CARGO_TARGET_DIR)/release/muster scripts/bench.sh
	$(CARGO) bench --bench raft
	BENCH_ETCD=1 scripts/deps.sh
	$(CARGO) bench --bench vs_etcd

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

build:
	$(CARGO) build

clean:
	$(CARGO) clean
