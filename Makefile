# tailor: make run starts the engine with the sample config and the
# embedded broker; make test runs every check (see scripts/test.sh).

.PHONY: run test build bench kafka-start kafka-stop clean

run:
	go run ./cmd/tailor run

test:
	scripts/test.sh

build:
	go build -o tailor ./cmd/tailor

bench:
	go test -run '^$$' -bench . -benchtime 1s ./event/ ./state/ ./rules/ ./stream/
	go run ./cmd/tailor bench ingest --events 300000

kafka-start:
	deploy/kafka/kafka.sh start

kafka-stop:
	deploy/kafka/kafka.sh stop

clean:
	rm -rf data tailor
