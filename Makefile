# tailor: make run starts the engine with the sample config and the
# embedded broker; make test runs every check (see scripts/test.sh).

.PHONY: run test build bench kafka-start kafka-stop clean

run:
	go run ./cmd/tailor run

test:
	scripts/test.sh

# The version and revision are linked in: the go command stamps no VCS
# information in a git worktree, nor where .git is absent (images).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/tailorcdp/tailor/internal/buildinfo.version=$(VERSION) -X github.com/tailorcdp/tailor/internal/buildinfo.revision=$(REVISION)

build:
	go build -ldflags "$(LDFLAGS)" -o tailor ./cmd/tailor

bench:
	go test -run '^$$' -bench . -benchtime 1s ./event/ ./state/ ./rules/ ./stream/
	go run ./cmd/tailor bench ingest --events 300000

kafka-start:
	deploy/kafka/kafka.sh start

kafka-stop:
	deploy/kafka/kafka.sh stop

clean:
	rm -rf data tailor
