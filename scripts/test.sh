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

# engine's TestBrowserAnalyticsJS and TestBrowserTailorJS, and
# cmd/tailor's TestDemo, load analytics.js, as published on npm (the
# version and integrity below, as in engine/browser_test.go), in headless
# Chromium (.ci/run installs Debian's chromium); they skip without either.
AJS_VERSION=1.84.1
AJS_INTEGRITY=sha512-jcwALgEc4DP6PG6oj0YS0yLiQL2R/N1NAgGGH50898/FNcXLyv/v8c+qoiHJxIpGm3qp8nJZTDeGe1z1Co2NzA==
ajs=.cache/npm/analytics-next-$AJS_VERSION
if [ ! -f "$ajs/package/dist/umd/index.js" ] && command -v npm >/dev/null; then
	step "@segment/analytics-next $AJS_VERSION from npm (the browser test)"
	rm -rf "$ajs" && mkdir -p "$ajs"
	if (cd "$ajs" && npm pack --silent "@segment/analytics-next@$AJS_VERSION" >/dev/null) &&
		[ "sha512-$(openssl dgst -sha512 -binary "$ajs/segment-analytics-next-$AJS_VERSION.tgz" | base64 -w0)" = "$AJS_INTEGRITY" ]; then
		tar xzf "$ajs/segment-analytics-next-$AJS_VERSION.tgz" -C "$ajs"
	else
		echo "could not fetch it, or its integrity differs: TestBrowserAnalyticsJS will skip"
		rm -rf "$ajs"
	fi
fi
command -v chromium >/dev/null || echo "no chromium: the browser tests (TestBrowser*, TestDemo) will skip"

# engine's TestSchemathesis runs schemathesis, from PyPI, against a live
# engine and its OpenAPI description: installed with pip into a virtual
# environment (.ci/run installs python3-venv), every package pinned with
# its hashes (scripts/schemathesis.txt); the test skips without it.
ST_VERSION=4.32.5
st=.cache/schemathesis
if ! "$st/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
	step "schemathesis $ST_VERSION from PyPI (the API description test)"
	rm -rf "$st"
	if python3 -m venv "$st" && "$st/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps -r scripts/schemathesis.txt; then
		"$st/bin/st" --version
	else
		echo "could not install it (python3 and python3-venv?): TestSchemathesis will skip"
		rm -rf "$st"
	fi
fi

step "go test"
# engine's TestCollectBrokerOutage starts a broker of its own from the jars
# cached above (.cache/kafka, or TAILOR_KAFKA_HOME) and kills it; it skips
# without Java or the jars.
go test -count=1 -timeout 20m ./...

step "go test -race (concurrent packages)"
go test -count=1 -race -timeout 20m ./state/ ./stream/ ./serve/ ./decide/ ./deliver/ ./engine/

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
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./internal/duration/
go test -run '^$' -fuzz '^FuzzDuration$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./config/
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./money/
go test -run '^$' -fuzz '^FuzzHeaderList$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./serve/
go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./deliver/
go test -run '^$' -fuzz '^FuzzForwardedAddr$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./serve/
go test -run '^$' -fuzz '^FuzzRate$' -fuzztime "$FUZZTIME" -fuzzminimizetime 0 ./config/

step "all checks passed"
