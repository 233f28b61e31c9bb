#!/usr/bin/env bash
# The project's test command (make test; CI runs it through .ci/run).
#
# Checks formatting, go vet and staticcheck, then runs every test against a
# real Apache Kafka broker fetched from Maven Central when Java and Maven are
# present (deploy/kafka/kafka.sh), or against the embedded broker otherwise;
# the concurrent packages also run under the race detector, and each fuzz
# test runs briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Iterations, not a duration: a time-based run can end with a spurious
# "context deadline exceeded" failure from the fuzzing engine.
FUZZTIME=${FUZZTIME:-300000x}

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
go run "$STATICCHECK" ./...

if command -v java >/dev/null && command -v mvn >/dev/null; then
	step "Apache Kafka from Maven Central"
	deploy/kafka/kafka.sh start
	trap 'deploy/kafka/kafka.sh stop' EXIT
	export TAILOR_TEST_BROKERS=127.0.0.1:${KAFKA_PORT:-19092}
	echo "tests use the real broker at $TAILOR_TEST_BROKERS"
else
	step "no Java or Maven: tests use the embedded broker"
fi

if [ ! -f ../shared/data/online-retail.csv.gz ]; then
	step "WARNING: ../shared/data/online-retail.csv.gz is absent"
	echo "TestRetailReplay and TestCrashSafety will skip: put the data set beside the repository to run them"
fi

step "go test"
# engine's TestCollectBrokerOutage starts a broker of its own from the jars
# cached above (.cache/kafka, or TAILOR_KAFKA_HOME) and kills it; it skips
# without Java or the jars.
go test -count=1 -timeout 20m ./...

step "go test -race (concurrent packages)"
go test -count=1 -race -timeout 20m ./state/ ./stream/ ./serve/ ./decide/ ./engine/

step "fuzz (${FUZZTIME} each)"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./event/
go test -run '^$' -fuzz '^FuzzCheckJSON$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./event/
go test -run '^$' -fuzz '^FuzzDecodeProfile$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./state/
go test -run '^$' -fuzz '^FuzzCompile$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./rules/
go test -run '^$' -fuzz '^FuzzParseDecisionID$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./event/
go test -run '^$' -fuzz '^FuzzParseRequest$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./decide/
go test -run '^$' -fuzz '^FuzzAppendString$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./internal/jsonenc/
go test -run '^$' -fuzz '^FuzzAppendValue$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./internal/jsonenc/
go test -run '^$' -fuzz '^FuzzProfileKey$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./serve/
go test -run '^$' -fuzz '^FuzzHeaderList$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./serve/

step "all checks passed"
