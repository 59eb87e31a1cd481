# scopegate: `make build` builds bin/scopegate; `make run` builds it and
# serves the bundled example policy with the development keys; `make test`
# runs every unit and in-process end-to-end test.
#
# make run takes settings as SCOPEGATE_* variables (in the environment or on
# the make command line) and extra flags in ARGS:
#   make run SCOPEGATE_METRICS_ADDR=127.0.0.1:9300
#   make run ARGS='--log-format text --http-addr ""'
GO        ?= go
POLICY    ?= examples/policy.yaml
ARGS      ?=
GOBIN     := $(shell $(GO) env GOPATH)/bin
PKGS      := ./...
# The version stamped into the binary: the nearest tag, else the commit.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -buildid= -X main.version=$(VERSION)

# SCOPEGATE_* given on the make command line reach the server too.
export $(filter SCOPEGATE_%,$(.VARIABLES))

.PHONY: run test build release reproducible lint bench bench-load fuzz soak e2e tools clean

run: build
	exec ./bin/scopegate serve --policy $(POLICY) $(ARGS)

test:
	$(GO) test -race -count=1 $(PKGS)

build:
	@echo "building bin/scopegate $(VERSION) (the first build compiles the dependencies: a minute or two)"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/scopegate ./cmd/scopegate

release: ## static binaries for linux/darwin x amd64/arm64, SHA256SUMS and a CycloneDX SBOM in dist/
	VERSION=$(VERSION) .ci/release

reproducible: ## build one release target twice and compare the hashes
	.ci/reproducible

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GOBIN)/staticcheck $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./decision/ ./envoy/ ./server/ ./server/forwardauth/ ./bench/harness/ | tee bench.txt

bench-load: ## loopback: scopegate vs the no-op ext_authz server, alternating rounds
	$(GO) run ./bench --concurrency 1 --conns 1 --duration 20s --rounds 10 --json bench-c1.json
	$(GO) run ./bench --concurrency 64 --conns 4 --duration 20s --rounds 10 --json bench-c64.json

fuzz: ## every fuzz target for a bounded time, as CI does
	.ci/fuzz

e2e: ## end to end with real nginx and Caddy (installs them with apt if missing)
	.ci/e2e

soak: ## 10 minutes at half the measured maximum rate; not part of CI
	SCOPEGATE_SOAK=1 $(GO) test -run '^TestSoak$$' -count=1 -timeout 20m -v ./server/

tools:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(GO) install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

clean:
	rm -rf bin dist bench.txt bench-c1.json bench-c64.json

# Our own API: generated Go is committed, so a build needs no protoc. buf runs
# offline with local plugins only (see proto/README.md).
# --- protobuf (scopegate/v1): offline, no buf deps, generated Go committed ---
BUF_VERSION                ?= 1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
GOBIN_DIR := $(shell go env GOBIN)
GOBIN_DIR := $(if $(GOBIN_DIR),$(GOBIN_DIR),$(shell go env GOPATH)/bin)
PROTO_ENV := PATH="$(GOBIN_DIR):$$PATH"

.PHONY: proto proto-check proto-tools
proto-tools: ## install the pinned protobuf tools
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	npm install -g @bufbuild/buf@$(BUF_VERSION)

proto: ## format, lint and regenerate proto/**/*.pb.go
	@$(PROTO_ENV) buf --version | grep -qx '$(BUF_VERSION)' || { echo "proto: need buf $(BUF_VERSION); run 'make proto-tools'" >&2; exit 1; }
	@$(PROTO_ENV) protoc-gen-go --version | grep -qx 'protoc-gen-go $(PROTOC_GEN_GO_VERSION)' || { echo "proto: need protoc-gen-go $(PROTOC_GEN_GO_VERSION); run 'make proto-tools'" >&2; exit 1; }
	@$(PROTO_ENV) protoc-gen-go-grpc --version | grep -qx 'protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION:v%=%)' || { echo "proto: need protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION); run 'make proto-tools'" >&2; exit 1; }
	$(PROTO_ENV) buf format -w
	$(PROTO_ENV) buf lint
	$(PROTO_ENV) buf generate

proto-check: proto ## fail if proto/ differs from what is committed
	@if [ -n "$$(git status --porcelain -- proto/ buf.yaml buf.gen.yaml)" ]; then \
	  echo "proto-check: proto/ is not up to date with its generated code; run 'make proto' and commit:" >&2; \
	  git status --porcelain -- proto/ buf.yaml buf.gen.yaml >&2; git --no-pager diff --stat -- proto/ >&2; exit 1; \
	fi
