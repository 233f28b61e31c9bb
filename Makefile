# tailor: make run starts the engine with the sample config and the
# embedded broker; make test runs every check (see scripts/test.sh).

.PHONY: run test build image image-local bench kafka-start kafka-stop clean

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

# The image (deploy/docker/Dockerfile): docker, or CONTAINER=podman.
CONTAINER ?= docker
IMAGE     ?= tailor:$(VERSION)

image:
	$(CONTAINER) build -f deploy/docker/Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

# The same image from a static binary built here, pulling nothing
# (deploy/docker/Dockerfile.scratch).
image-local:
	rm -rf deploy/docker/context && mkdir -p deploy/docker/context/data
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $(LDFLAGS)" -o deploy/docker/context/tailor ./cmd/tailor
	cp /etc/ssl/certs/ca-certificates.crt deploy/docker/context/
	$(CONTAINER) build -f deploy/docker/Dockerfile.scratch -t $(IMAGE) deploy/docker/context

bench:
	go test -run '^$$' -bench . -benchtime 1s ./event/ ./state/ ./rules/ ./stream/
	go run ./cmd/tailor bench ingest --events 300000

kafka-start:
	deploy/kafka/kafka.sh start

kafka-stop:
	deploy/kafka/kafka.sh stop

clean:
	rm -rf data tailor deploy/docker/context
