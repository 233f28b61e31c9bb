#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft) broker for tests, fetched from
# Maven Central: no tarball, no Docker.
#
#   deploy/kafka/kafka.sh fetch    download the jars once (cached)
#   deploy/kafka/kafka.sh start    format a fresh log dir and start the broker
#   deploy/kafka/kafka.sh resume   start it again on the data of the last start
#                                  (after stop, or after the process was killed)
#   deploy/kafka/kafka.sh stop     stop it
#   deploy/kafka/kafka.sh status   exit 0 when it is running
#
# Needs Java 17+ and Maven. Environment:
#   KAFKA_PORT             broker port on 127.0.0.1 (default 19092)
#   KAFKA_CONTROLLER_PORT  controller port (default 19093)
#   TAILOR_KAFKA_HOME      cache and run directory (default .cache/kafka in the repo)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
home=${TAILOR_KAFKA_HOME:-$repo/.cache/kafka}
port=${KAFKA_PORT:-19092}
cport=${KAFKA_CONTROLLER_PORT:-19093}
libs=$home/libs
run=$home/run
pidfile=$run/kafka.pid

log() { echo "kafka.sh: $*" >&2; }

fetch() {
	if [ -f "$libs/.complete" ] && cmp -s "$here/pom.xml" "$libs/.complete"; then
		return
	fi
	command -v mvn >/dev/null || { log "Maven (mvn) is needed to fetch Kafka"; exit 1; }
	log "fetching Apache Kafka jars from Maven Central into $libs"
	rm -rf "$libs"
	mkdir -p "$libs"
	mvn -B -q -f "$here/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$libs"
	cp "$here/pom.xml" "$libs/.complete"
	log "fetched $(ls "$libs" | wc -l) jars ($(du -sh "$libs" | cut -f1))"
}

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
	command -v java >/dev/null || { log "Java 17+ is needed to run Kafka"; exit 1; }
	fetch
	if running; then
		log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
		return
	fi
	if port_open "$port"; then
		log "port $port is taken by another process; set KAFKA_PORT"
		exit 1
	fi
	rm -rf "$run"
	mkdir -p "$run/logs" "$run/data"
	sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$cport#g" -e "s#@LOG_DIR@#$run/data#g" \
		"$here/server.properties" >"$run/server.properties"
	local jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -Dkafka.logs.dir="$run/logs"
		-Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$libs/*")
	local id
	id=$(java "${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
	java "${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$run/server.properties" >"$run/logs/format.log" 2>&1 \
		|| { cat "$run/logs/format.log" >&2; exit 1; }
	launch
}

resume() {
	command -v java >/dev/null || { log "Java 17+ is needed to run Kafka"; exit 1; }
	if running; then
		log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
		return
	fi
	[ -f "$run/server.properties" ] || { log "nothing to resume in $run: use start"; exit 1; }
	launch
}

# launch starts the broker formatted in $run and waits for its port.
launch() {
	local jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -Dkafka.logs.dir="$run/logs"
		-Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$libs/*")
	nohup java "${jvm[@]}" kafka.Kafka "$run/server.properties" >>"$run/logs/stdout.log" 2>&1 &
	echo $! >"$pidfile"
	local started=$SECONDS
	until port_open "$port"; do
		if ! running; then
			log "broker exited during start:"
			tail -n 30 "$run/logs/stdout.log" "$run/logs/server.log" >&2 2>/dev/null || true
			exit 1
		fi
		if (( SECONDS - started > 90 )); then
			log "broker did not open port $port within 90 s"
			stop
			exit 1
		fi
		sleep 0.5
	done
	log "running on 127.0.0.1:$port (pid $(cat "$pidfile"), started in $((SECONDS - started)) s)"
}

stop() {
	if ! running; then
		rm -f "$pidfile"
		return
	fi
	local pid
	pid=$(cat "$pidfile")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$pidfile"
	log "stopped"
}

case "${1:-}" in
fetch) fetch ;;
start) start ;;
resume) resume ;;
stop) stop ;;
status) running ;;
*)
	echo "usage: $0 fetch|start|resume|stop|status" >&2
	exit 2
	;;
esac
