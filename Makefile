# PVE network migration switch. `make run` and `make test` work on a fresh
# machine with only Go and make: every other tool is fetched here, pinned.
SHELL := /bin/bash
# Go 1.26.8 carries standard-library vulnerabilities that reach this code
# (net/http, net/textproto, crypto/tls, crypto/x509; see make vulncheck);
# 1.27.3 fixes them. The go command fetches it from the module proxy once.
GOTOOLCHAIN := go1.27.3
export GOTOOLCHAIN
GO ?= go
BIN := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT := golang.org/x/perf/cmd/benchstat@latest
PKGS := ./...

.PHONY: all build test test-short bench lint fmt vet staticcheck proto run clean fuzz jaeger test-jaeger vulncheck soak

all: build

build: ## binaries into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/... ./examples/pve-demo-backend

test: ## every test, with the race detector
	$(GO) test -race -count=1 $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

bench: ## benchmarks; each has its baseline in the same run (see README)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS) | tee bench.txt
	@echo "compare with: go run $(BENCHSTAT) bench.txt"

fuzz: ## a short run of every fuzz target in the module (FUZZTIME each, default 30s; one worker)
	@for f in $$(grep -rlE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' --exclude-dir=.cache .); do \
		for t in $$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)' $$f | sed 's/func //'); do \
			echo "== $$(dirname $$f) $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} -parallel $${FUZZPARALLEL:-1} $$(dirname $$f) || exit 1; \
		done; done

run: ## the whole system here: router + embedded data plane on :8006, demo backends, Jaeger if built
	scripts/run.sh

jaeger: ## build Jaeger v1.76.0 from the Go module proxy once (about 7 minutes), cached
	scripts/jaeger.sh build

test-jaeger: ## end-to-end: decision spans in a real Jaeger (builds it first if needed)
	scripts/jaeger.sh test

.PHONY: test-browser
test-browser: ## the /compare page in headless Chromium (installs Debian's chromium if missing)
	scripts/chromium.sh test

proto: ## regenerate the control API's Go code (installs protoc and plugins if missing)
	scripts/proto.sh

vulncheck: ## govulncheck against a vulnerability database built offline from golang.org/x/vulndb
	scripts/vulncheck.sh

soak: ## mixed traffic with faults and phase flips through the data plane (SOAK_DURATION, default 10m)
	scripts/soak.sh

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

clean:
	rm -rf $(BIN) bench.txt

# Operating it the PVE way: Debian package, alert rules, dashboard.
.PHONY: deb test-deb test-rules test-dashboard

deb: ## dist/pve-migration-router_VERSION_amd64.deb with dpkg-deb, checked by lintian (installs dpkg-dev tools, lintian, help2man when missing)
	scripts/deb.sh build
	scripts/deb.sh lint

test-deb: ## build the package, lintian, then install it into a throwaway root and run the binaries
	scripts/deb.sh test

test-rules: ## promtool check and unit-test examples/prometheus/rules.yml (installs Debian's prometheus when missing)
	scripts/prometheus.sh rules

test-dashboard: ## every Grafana dashboard query against a real Prometheus scraping a real router
	scripts/prometheus.sh dashboard
