# whippet developer tasks. `make demo` and `make test` are the two commands a fresh
# machine needs; see README.md.

SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2

# Where `whippet kafka up` keeps the cluster (config, logs, data, env file).
KAFKA_STATE_DIR ?= $(CURDIR)/.kafka
export KAFKA_STATE_DIR

.PHONY: demo test test-chaos test-unit lint build-min-go kafka-up kafka-down bench bench-batch bench-compare bench-consumer bench-kvstore fuzz deps chromium

# The modules of the repository, joined by go.work: the library (root), the
# OpenTelemetry tracing (otel) and the modules only tests, tools and benchmarks need.
MODULES := . otel testkit/docker bench internal/browsertest internal/chaos
# Every package `make test` runs (the chaos suite runs on its own, in test-chaos).
TEST_PKGS := ./... ./otel/... ./testkit/docker/... ./bench/... ./internal/browsertest/...
# The lowest Go toolchain the library's dependencies allow (go.mod's go line).
MIN_GO := $(shell sed -n 's/^go //p' go.mod)

# The end-to-end examples on an embedded kfake cluster: Go only, no broker.
demo:
	$(GO) run ./examples/quickstart
	$(GO) run ./examples/renewals
	$(GO) run ./examples/notifier
	$(GO) run ./examples/kvstore
	$(GO) run ./examples/checkout
	$(GO) run ./examples/imports
	$(GO) run ./otel/examples/tracing

deps:
	@for m in $(MODULES); do (cd $$m && $(GO) mod download) || exit 1; done

# Start (or reuse) Apache Kafka on 127.0.0.1 from Maven Central jars; writes $(KAFKA_STATE_DIR)/env.
# Honours KAFKA_VERSION, KAFKA_NODES, KAFKA_BASE_PORT.
kafka-up:
	$(GO) run ./cmd/whippet kafka up

kafka-down:
	$(GO) run ./cmd/whippet kafka down

# Every test on a real Apache Kafka broker: start it, run the tests, stop it whatever happened.
# $(KAFKA_STATE_DIR)/env exports KAFKA_BROKERS and KAFKA_VERSION for testkit's external backend.
# The full verbose log goes to $(TEST_LOG); the console shows each test's result and the
# "whippet testkit: ..." line naming the broker every test binary ran on.
TEST_LOG ?= $(KAFKA_STATE_DIR)/go-test.log
test: deps lint build-min-go chromium
	$(MAKE) --no-print-directory kafka-up
	set -a; source "$(KAFKA_STATE_DIR)/env"; set +a; set -o pipefail; \
	  $(GO) test -race -count=1 -timeout 20m -v $(TEST_PKGS) 2>&1 | tee "$(TEST_LOG)" \
	    | grep --line-buffered -E '^(ok|FAIL|PASS|panic:|--- |whippet testkit:|\?)|^ +[a-z_]+_test\.go:[0-9]+:'; \
	  status=$$?; \
	  echo "full test log: $(TEST_LOG)"; \
	  $(MAKE) --no-print-directory kafka-down; \
	  $(MAKE) --no-print-directory test-chaos || status=1; \
	  exit $$status

# The chaos suite (internal/chaos, build tag chaos), part of `make test`: a 3-node Apache Kafka
# cluster it starts itself on 127.0.0.1 (replication 3, min.insync.replicas 2; base port 25192 or
# the first free one in 21092..29000), with consumer processes SIGKILLed and brokers SIGKILLed +
# restarted and frozen (SIGSTOP/SIGCONT). Prints a table of records, lost, duplicated and time to
# recover; the full log goes to $(CHAOS_LOG).
CHAOS_LOG ?= $(KAFKA_STATE_DIR)/chaos-test.log
test-chaos: deps
	@mkdir -p "$(dir $(CHAOS_LOG))"
	set -o pipefail; \
	  $(GO) test -tags chaos -race -count=1 -v -timeout 30m ./internal/chaos/ 2>&1 | tee "$(CHAOS_LOG)" \
	    | grep --line-buffered -E '^(ok|FAIL|PASS|panic:|--- |\||whippet chaos:)|^ +[a-z_]+_test\.go:[0-9]+:'; \
	  status=$$?; echo "full chaos log: $(CHAOS_LOG)"; exit $$status

# Debian's Chromium, for the browser tests of whippet's web pages (internal/browsertest).
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update -qq && $$S apt-get install -y -qq chromium; }

# The tests with franz-go's in-process kfake instead of a real broker (fast, not proof).
test-unit:
	WHIPPET_KAFKA=kfake $(GO) test -count=1 $(TEST_PKGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet $(TEST_PKGS)
	$(GO) vet -tags chaos ./internal/chaos/
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(TEST_PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags chaos ./internal/chaos/
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy -diff >/dev/null) || \
	  { echo "go.mod of module $$m is not tidy: run go mod tidy there"; exit 1; }; done

# The library packages alone (no go.work), built with the lowest Go toolchain
# go.mod declares; the Go module proxy serves it through GOTOOLCHAIN. The otel
# module is a library too.
build-min-go:
	GOWORK=off GOTOOLCHAIN=go$(MIN_GO) $(GO) build ./...
	cd otel && GOWORK=off GOTOOLCHAIN=go$(MIN_GO) $(GO) build ./...

# The consumer benchmarks on real Kafka: whippet vs a plain franz-go PollFetches loop over the same
# 1,000,000 records, and key-parallel throughput against its ideal.
bench-consumer: deps
	$(MAKE) --no-print-directory kafka-up
	set -a; source "$(KAFKA_STATE_DIR)/env"; set +a; \
	  $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./consumer/ ; status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; \
	  exit $$status

# The KV store benchmarks on real Kafka: cold load of 1,000,000 keys against a plain franz-go
# consume and a hand-written franz-go + map loader, memory per entry, and Get ns/op.
bench-kvstore: deps
	$(MAKE) --no-print-directory kafka-up
	set -a; source "$(KAFKA_STATE_DIR)/env"; set +a; \
	  $(GO) test -run '^$$' -bench Load -benchtime 1x -timeout 30m ./kvstore/ && \
	  $(GO) test -run '^$$' -bench Get -timeout 30m ./kvstore/; status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; exit $$status

# whippet against plain franz-go and the peers (Spring Kafka @RetryableTopic and batch listener, Confluent
# parallel-consumer, goka; Greyhound built from its source in ../shared/peers/greyhound) on real
# Kafka, in one run: one table, written to bench/RESULTS.md. Needs Java 17+ and Maven for the JVM
# peers. Sizes and rounds:
# `go run ./bench -h`, passed with BENCH_FLAGS.
BENCH_FLAGS ?=
# S1, S2, S3 and S5 with whippet at BASE (a commit) as whippet-baseline in the same rounds as the
# working tree's: `make bench-compare BASE=<commit>` (prints the table; RESULTS.md untouched).
BASE ?= HEAD~1
bench-compare: deps
	rm -rf .bench-base && git worktree add --detach .bench-base $(BASE)
	cd .bench-base/bench && GOWORK=off $(GO) build -o ../../.bench-base.bin . ; status=$$?; \
	  cd ../.. && git worktree remove --force .bench-base; exit $$status
	$(MAKE) --no-print-directory kafka-up
	set -a; source "$(KAFKA_STATE_DIR)/env"; set +a; \
	  $(GO) run ./bench -scenarios S1,S2,S3,S5 -no-results -baseline "$(CURDIR)/.bench-base.bin" $(BENCH_FLAGS); status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; \
	  exit $$status

bench: deps
	$(MAKE) --no-print-directory kafka-up
	set -a; source "$(KAFKA_STATE_DIR)/env"; set +a; \
	  $(GO) run ./bench $(BENCH_FLAGS); status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; \
	  exit $$status

# S6 alone (about 3 minutes): whippet's batch handler against its per-record handler and Spring Kafka's
# batch listener, into a sink costing 2 ms per call + 2 µs per record. Prints the table and writes it
# to bench/.build/RESULTS-S6.md, leaving bench/RESULTS.md (the full run's) as it is. Next to another
# Kafka on 19092, pass KAFKA_BASE_PORT (e.g. KAFKA_BASE_PORT=23092 make bench-batch).
bench-batch: deps
	$(MAKE) --no-print-directory kafka-up
	set -a; source "$(KAFKA_STATE_DIR)/env"; set +a; \
	  BENCH_MAKE_TARGET=bench-batch $(GO) run ./bench -scenarios S6 -results bench/.build/RESULTS-S6.md $(BENCH_FLAGS); status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; \
	  exit $$status

# Every fuzz target for FUZZTIME each (their seed corpora already run in `make test`).
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list $(TEST_PKGS)); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done
