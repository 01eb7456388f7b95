# The README's two commands are `go run ./cmd/fhirstream demo` and `make test`.
# .ci/run calls `make test` after starting a real Apache Kafka broker and setting
# FHIRSTREAM_TEST_BROKERS; without it the integration tests run on in-process kfake only.

GO           ?= go
# Each fuzz target runs for a number of executions, about 10 s on the 2-core CI box. Not a
# duration: with -fuzztime=<duration> Go's fuzz coordinator can fail a clean run with
# "context deadline exceeded" when its deadline fires while a worker is mid-call
# (golang/go#75804, fixed in Go 1.27). FUZZ_EXECS overrides any target's count.
FUZZ_EXECS   ?= FuzzValidate=50000x FuzzOnePassMatchesTree=80000x FuzzMetaExtraction=80000x \
                FuzzScanResource=40000x FuzzHasControl=600000x FuzzScanMatchesFastjson=500000x \
                FuzzParseIsStrictJSON=200000x
FUZZ_DEFAULT ?= 50000x
PKGS         := ./...

.PHONY: test quick check unit integration-real fuzz build demo bench clean readers

## test: everything CI runs: static checks, bounded fuzzing, unit + integration tests
## (kfake) with the race detector, then the integration tests again on the real broker when
## FHIRSTREAM_TEST_BROKERS is set. The go test runs come last so their summary closes the log.
test: check fuzz unit integration-real

## quick: the unit tests and the fast integration tests on kfake, without the race
## detector, kill tests, chaos tests or real services (go test -short): the loop to run
## while changing code. Needs only Go.
quick:
	$(GO) test -short -count=1 $(PKGS)

## check: formatting, go vet and staticcheck (pinned by the tool directive in go.mod).
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## unit: all tests; integration tests use an in-process kfake cluster here.
unit:
	env -u FHIRSTREAM_TEST_BROKERS $(GO) test -race -count=1 -timeout 15m $(PKGS)

## integration-real: the TestIntegration* tests against the broker in FHIRSTREAM_TEST_BROKERS,
## one package at a time (-p 1): the chaos test starts a second broker and seven processes,
## and beside it the sink tests have twice run out of their 90 s wait on this 2-core CI box.
integration-real:
	@if [ -z "$$FHIRSTREAM_TEST_BROKERS" ]; then \
	  echo "FHIRSTREAM_TEST_BROKERS not set: skipping integration tests on a real broker"; \
	  echo "(start one with deploy/kafka/kafka-local.sh start, or run .ci/run)"; \
	else \
	  echo "integration tests against the real broker at $$FHIRSTREAM_TEST_BROKERS"; \
	  $(GO) test -p 1 -count=1 -timeout 20m -run Integration $(PKGS); \
	fi

## fuzz: each fuzz target for a bounded number of executions (FUZZ_EXECS).
fuzz:
	@for target in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$target/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    n=$$(echo " $(FUZZ_EXECS) " | sed -n "s/.* $$f=\([0-9]*x\) .*/\1/p"); n=$${n:-$(FUZZ_DEFAULT)}; \
	    echo "fuzz $$target $$f ($$n)"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$$n $$target || exit 1; \
	  done; \
	done

## readers: the independent Iceberg readers (pyiceberg, DuckDB, Spark) against iceberg-go and
## Spark-written tables, and lake maintenance checked by them. Needs the packages of
## internal/testlake/py/requirements.txt and `deploy/iceberg/iceberg-rest-local.sh spark-jars`;
## the REST catalog cases run when FHIRSTREAM_TEST_ICEBERG_REST is set.
readers:
	$(GO) test -count=1 ./internal/testlake/ ./internal/lakeops/ -run 'TestReaders|TestREST|TestCompact|TestExpire|TestHistory'

build:
	$(GO) build -o bin/fhirstream ./cmd/fhirstream

demo:
	$(GO) run ./cmd/fhirstream demo

clean:
	rm -rf bin lake
