# customdata-worker — see README.md.
#
#   make demo   run the worker for real on defaults and watch a login change a document,
#               then watch the change reach a token through the reference issuer
#   make test   everything CI checks: format, vet, unit + integration tests with -race,
#               then the TypeScript example issuer's tests (make test-ts)
#   make bench  Go micro-benchmarks, then the load benchmark of the worker binary
#   make chaos  the long fault run (CHAOS_DURATION, default 10m, on a 3-node NATS cluster;
#               a short one on one nats-server is in make test)
#
# Integration tests need MongoDB: MONGODB_URI if set (a replica set, e.g.
# `docker compose up -d mongo`), else the in-memory stand-in built here with
# Maven (`make standin`, Java 17).

GO        ?= go
MVN       ?= mvn
BIN       := bin/customdata-worker
ISSUER_BIN := bin/reference-issuer
BRIDGE_BIN := bin/customdata-bridge
STANDIN   := internal/mongostandin/launcher
STANDIN_JAR := $(STANDIN)/target/mongo-standin.jar
LOADBENCH := bin/loadbench
# nats-server for the load benchmark: the version go.mod pins, installed
# into bin/ so a fresh machine needs nothing else.
NATS_SERVER := bin/nats-server
NATS_SERVER_VERSION ?= $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
# Build stamp of `customdata-worker version` (internal/buildinfo). The
# Dockerfiles pass the same -X flags from their VERSION, COMMIT and
# BUILD_TIME build arguments (a test compares them with LDFLAGS).
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_TIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO  := github.com/customdata-worker/customdata-worker/internal/buildinfo
LDFLAGS    := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).buildTime=$(BUILD_TIME)
GOFILES   := $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './vendor/*')

.PHONY: all build demo demo-issuer test test-ts unit lint fmt-check vet standin standin-run chaos fuzz bench bench-micro bench-load clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/customdata-worker
	$(GO) build -ldflags "$(LDFLAGS)" -o $(ISSUER_BIN) ./cmd/reference-issuer
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BRIDGE_BIN) ./cmd/customdata-bridge

standin: $(STANDIN_JAR)

$(STANDIN_JAR): $(STANDIN)/pom.xml $(wildcard $(STANDIN)/src/main/java/dev/customdata/standin/*.java)
	$(MVN) -q -B -f $(STANDIN)/pom.xml package

# The stand-in in the foreground on 127.0.0.1:$(STANDIN_PORT), for local
# trials (in memory, data gone when it stops; Ctrl-C or end of input stops
# it). Point the worker at it with directConnection=true (it is no replica
# set): see README, "Trying it on the stand-in".
STANDIN_PORT ?= 27017
standin-run: standin
	java -Xss1m -cp "$(STANDIN_JAR):$(STANDIN)/target/lib/*" dev.customdata.standin.Launcher $(STANDIN_PORT)

# The demo uses MONGODB_URI when set, else starts the in-memory stand-in;
# NATS runs embedded in the worker process.
demo: build $(if $(MONGODB_URI),,standin)
	./$(BIN) demo
	./$(ISSUER_BIN) -worker $(BIN) demo

# Only the issuer loop: login, worker write, outside write, delete, each
# reaching a refreshed token, with commit → refresh times.
demo-issuer: build $(if $(MONGODB_URI),,standin)
	./$(ISSUER_BIN) -worker $(BIN) demo

lint: fmt-check vet

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The chaos test (internal/chaos) runs nats-server as a process: the
# binary the Makefile installs into bin/.
test: lint $(NATS_SERVER) $(if $(MONGODB_URI),,standin)
	NATS_SERVER_BIN=$(abspath $(NATS_SERVER)) $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory test-ts

# The TypeScript issuer of examples/ts-issuer (nats.js, the MongoDB Node
# driver; Node 20.19+ and npm) under node's test runner, against the
# nats-server binary, MongoDB (MONGODB_URI or the stand-in) and the worker
# binary: the notice contract is enough for an issuer that is not Go.
test-ts: $(NATS_SERVER) $(if $(MONGODB_URI),,standin)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/customdata-worker
	cd examples/ts-issuer && npm ci --include=dev --no-audit --no-fund
	cd examples/ts-issuer && NATS_SERVER_BIN=$(abspath $(NATS_SERVER)) WORKER_BIN=$(abspath $(BIN)) \
		MONGO_STANDIN_DIR=$(abspath $(STANDIN)) npm test

# The long chaos run (the short one is part of `make test`): real
# nats-server, worker and reference-issuer processes under seeded faults for
# CHAOS_DURATION, on a cluster of CHAOS_NATS_NODES nats-servers (R3 streams;
# 1 for a single server), the notifier split into CHAOS_PARTITIONS
# partitions (NOTIFIER_PARTITIONS); CHAOS_SEED replays a run. Prints one
# summary line; fails on any loss.
CHAOS_DURATION ?= 10m
CHAOS_NATS_NODES ?= 3
CHAOS_PARTITIONS ?= 1
chaos: $(NATS_SERVER) $(if $(MONGODB_URI),,standin)
	CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_NATS_NODES=$(CHAOS_NATS_NODES) CHAOS_PARTITIONS=$(CHAOS_PARTITIONS) NATS_SERVER_BIN=$(abspath $(NATS_SERVER)) $(GO) test -run '^TestChaos$$' -count=1 -timeout 90m -v ./internal/chaos/

unit:
	$(GO) test -count=1 ./events/ ./triggers/ ./internal/redact/

# Short coverage-guided fuzzing of the decoders, the trigger-file parser and the bridge's webhook mapping (the seed corpora run in `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./events/
	$(GO) test -run '^$$' -fuzz '^FuzzUserToken$$' -fuzztime $(FUZZTIME) ./events/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./events/
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./triggers/
	$(GO) test -run '^$$' -fuzz '^FuzzMapping$$' -fuzztime $(FUZZTIME) ./internal/bridge/ingest/

# Figures, not assertions. bench-micro: decode, trigger decisions and
# coalescing (-benchmem), plus every benchmark under worker/ (the in-process
# consumer and commit → notice benchmarks, 2000 iterations), the
# notifier's own CPU per change on a scripted feed (100,000 changes), the issuer
# cache hit cost, the bridge's hook calls answered from the cache, and
# commit → refreshed-token latency. bench-load: the
# worker binary against a nats-server process and MongoDB, beside a naive
# worker and the database and broker ceilings (docs/BENCHMARK.md; WORKER_BIN,
# BENCH_* and MONGODB_URI configure it; JSON goes to BENCH_OUT, default
# bench/results/).
bench: bench-micro bench-load

bench-micro: $(if $(MONGODB_URI),,standin)
	$(GO) test -run '^$$' -bench . -benchmem ./events/ ./triggers/
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkNotifierOwnCost$$' -benchmem -benchtime 2000x ./worker/...
	$(GO) test -run '^$$' -bench '^BenchmarkNotifierOwnCost$$' -benchtime 100000x ./worker/notify/
	$(GO) test -run '^$$' -bench . -benchmem ./issuer/
	$(GO) test -run '^$$' -bench . -benchmem ./internal/bridge/
	$(GO) test -run '^$$' -bench . -benchtime 200x ./cmd/reference-issuer/

bench-load: build $(NATS_SERVER) $(if $(MONGODB_URI),,standin)
	$(GO) build -o $(LOADBENCH) ./internal/loadbench
	NATS_SERVER_BIN=$(NATS_SERVER) ./$(LOADBENCH)

$(NATS_SERVER): go.mod
	GOBIN=$(abspath bin) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	@touch $@

clean:
	rm -rf bin $(STANDIN)/target
