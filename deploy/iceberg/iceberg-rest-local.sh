#!/usr/bin/env bash
# iceberg-rest-local.sh: Apache Iceberg's REST catalog server (the project's own
# test fixture, org.apache.iceberg.rest.RESTCatalogServer) with a SQLite catalog
# and a file:// warehouse, from Maven Central jars and the machine's Java. For CI
# and local runs of the REST catalog path. See README.md beside this file.
#
#   iceberg-rest-local.sh start  [--port N] [--dir D] [--timeout S]
#   iceberg-rest-local.sh stop   [--dir D] [--keep] [--timeout S]
#   iceberg-rest-local.sh crash  [--dir D]   (SIGKILL, state kept: for restart tests)
#   iceberg-rest-local.sh status [--dir D]
#   iceberg-rest-local.sh logs   [--dir D] [-f] [-n LINES]
#   iceberg-rest-local.sh spark-jars         (resolves Spark's Iceberg jars, prints their dir)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
libs="$here/target/libs"
main_class=org.apache.iceberg.rest.RESTCatalogServer
svc_name=iceberg-rest-local svc_role=server svc_poll=0.5 svc_addr=http://127.0.0.1:
svc_logs=(server.log)
# shellcheck source=../lib/local-service.sh
. "$here/../lib/local-service.sh"

usage() {
	sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	cat >&2 <<'EOF'

Environment (flags win):
  FHIRSTREAM_ICEBERG_REST_PORT     port (default 29181); the server listens on ALL interfaces
  FHIRSTREAM_ICEBERG_REST_DIR      state dir: catalog.db, warehouse/, logs, pid
                                   (default $TMPDIR/fhirstream-iceberg-rest)
  FHIRSTREAM_ICEBERG_REST_TIMEOUT  seconds start waits for readiness (default 60; stop waits 30)
  FHIRSTREAM_ICEBERG_REST_HEAP     server heap options (default "-Xms64m -Xmx512m")
  JAVA_HOME                        Java 17+ to run with (default: java on PATH)
EOF
	exit 2
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift

port=${FHIRSTREAM_ICEBERG_REST_PORT:-}
dir=${FHIRSTREAM_ICEBERG_REST_DIR:-${TMPDIR:-/tmp}/fhirstream-iceberg-rest}
timeout=${FHIRSTREAM_ICEBERG_REST_TIMEOUT:-}
heap=${FHIRSTREAM_ICEBERG_REST_HEAP:--Xms64m -Xmx512m}
stop_timeout=30
keep=false
follow=false
lines=100
while (($#)); do
	case $1 in
	--port) port=${2:?--port needs a value}; shift ;;
	--port=*) port=${1#*=} ;;
	--dir) dir=${2:?--dir needs a value}; shift ;;
	--dir=*) dir=${1#*=} ;;
	--timeout) timeout=${2:?--timeout needs a value}; stop_timeout=$timeout; shift ;;
	--timeout=*) timeout=${1#*=}; stop_timeout=$timeout ;;
	--keep) keep=true ;;
	-f | --follow) follow=true ;;
	-n) lines=${2:?-n needs a value}; shift ;;
	-h | --help) usage ;;
	*) die "unknown argument: $1 (try --help)" ;;
	esac
	shift
done

[[ -z $port ]] || { isnum "$port" && ((port > 0 && port < 65536)); } || die "bad port: $port"
[[ -z $timeout ]] || isnum "$timeout" || die "bad timeout: $timeout"
isnum "$stop_timeout" || die "bad timeout: $stop_timeout"
isnum "$lines" || die "bad line count: $lines"

# Everything the server owns lives under $dir, so stop can remove it whole. The
# catalog's own paths must be absolute: they are stored in catalog.db.
[[ $dir == /* ]] || dir="$PWD/$dir"
dir=${dir%/}
pidfile="$dir/rest.pid"
portfile="$dir/port"
logdir="$dir/logs"
svc_cmdline="-Dfhirstream.iceberg.rest.dir=$dir $main_class"
svc_markers=(port)

# --- helpers ---------------------------------------------------------------

# Copies the jars a POM lists into its target/libs, again whenever the POM changes.
resolve() {
	local pomdir=$1 what=$2 sum
	local out="$pomdir/target/libs"
	sum=$(sha256sum "$pomdir/pom.xml" | cut -d' ' -f1)
	if [[ -f $out/.pom.sha256 && $(<"$out/.pom.sha256") == "$sum" ]]; then
		return
	fi
	command -v mvn >/dev/null ||
		die "mvn not found: it fetches the $what jars once into ~/.m2 (apt-get install maven)"
	say "resolving $what jars with Maven into $out"
	rm -rf "$out"
	local t0=$EPOCHREALTIME
	mkdir -p "$pomdir/target"
	if ! mvn -q -B -f "$pomdir/pom.xml" dependency:copy-dependencies >"$pomdir/target/mvn.log" 2>&1; then
		tail -n 40 "$pomdir/target/mvn.log" >&2
		die "mvn dependency:copy-dependencies failed (log above, all in $pomdir/target/mvn.log)"
	fi
	echo "$sum" >"$out/.pom.sha256"
	say "jars resolved in $(since "$t0") s"
}

# A real REST round trip: GET /v1/config must answer 200 with the catalog's
# endpoint list. Plain bash, so the probe needs neither curl nor a JVM.
probe() {
	timeout 10 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET /v1/config HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n" >&3
		cat <&3' _ "$port" >"$logdir/probe.out" 2>&1 &&
		head -n 1 "$logdir/probe.out" | grep -q '^HTTP/1\.[01] 200' &&
		grep -q '"endpoints"\|"defaults"' "$logdir/probe.out"
}

uri() { echo "http://127.0.0.1:$port"; }

# --- commands --------------------------------------------------------------

do_start() {
	local pid
	timeout=${timeout:-60}
	pid=$(running_pid)
	if [[ -n $pid ]]; then
		local running_port
		running_port=$(cat "$portfile" 2>/dev/null || echo "?")
		if [[ -n $port && $port != "$running_port" ]]; then
			die "a server already runs from $dir on port $running_port (pid $pid), not $port: stop it or use another --dir"
		fi
		port=$running_port
		mkdir -p "$logdir"
		wait_ready "$pid" || { not_ready; exit 1; }
		say "already running (pid $pid) from $dir"
		uri
		return 0
	fi
	# A restart (after crash or stop --keep) comes back on the same port, so
	# clients holding the URI reconnect.
	port=${port:-$(cat "$portfile" 2>/dev/null || echo 29181)}
	port_open "$port" && die "port $port is in use by another program (try --port)"

	find_java "the Iceberg REST server"
	resolve "$here" "Iceberg REST catalog"

	mkdir -p "$dir/warehouse" "$logdir"
	echo "$port" >"$portfile"

	say "starting Iceberg REST catalog on port $port (all interfaces), state in $dir"
	local t0=$EPOCHREALTIME
	# The inner bash writes its own pid and then becomes java, so the pid file
	# holds the server's pid; setsid detaches it from the caller's terminal (-w:
	# if setsid must fork, it waits, so $! lives as long as the server). fd 9 is
	# the lock: the server must not inherit it. Every CATALOG_* variable becomes
	# a catalog property (CATALOG_REST_PORT -> rest.port); others from the
	# caller's environment are dropped so they cannot reconfigure it. One
	# connection to SQLite (clients=1): with Iceberg's default pool of two, concurrent
	# commits met SQLITE_BUSY ("UncheckedSQLException: Unknown failure"), and once in a
	# while a table was left pointing at a metadata file that was not there.
	local detach=(nohup)
	command -v setsid >/dev/null && detach=(setsid -w)
	local catalog_env=()
	while IFS= read -r v; do catalog_env+=(-u "$v"); done < <(compgen -e | grep '^CATALOG_' || true)
	# shellcheck disable=SC2086,SC2016 # heap holds several options; $$ is the inner bash's
	env "${catalog_env[@]}" \
		CATALOG_REST_PORT="$port" \
		CATALOG_URI="jdbc:sqlite:file:$dir/catalog.db?journal_mode=WAL&busy_timeout=10000" \
		CATALOG_WAREHOUSE="file://$dir/warehouse" \
		CATALOG_JDBC_SCHEMA__VERSION=V1 \
		CATALOG_CLIENTS=1 \
		"${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
		"$java" $heap -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
		-Dorg.slf4j.simpleLogger.defaultLogLevel=info \
		-Dorg.slf4j.simpleLogger.showDateTime=true \
		-Dorg.slf4j.simpleLogger.log.org.apache.hadoop=warn \
		-Dorg.slf4j.simpleLogger.log.org.eclipse.jetty=warn \
		-cp "$libs/*" "-Dfhirstream.iceberg.rest.dir=$dir" $main_class \
		</dev/null >"$logdir/server.log" 2>&1 9>&- &
	local launcher=$!

	if ! wait_ready "$launcher"; then
		not_ready
		# Start either succeeds or leaves nothing running; the state dir stays
		# for the logs.
		pid=$(running_pid)
		timeout=10
		[[ -n $pid ]] && terminate "$pid"
		kill -KILL "$launcher" 2>/dev/null || true
		die "start failed; state and logs kept in $dir ('$0 stop' removes them)"
	fi
	pid=$(running_pid)
	say "ready in $(since "$t0") s (pid $pid); logs: $logdir/server.log"
	uri
}

do_spark_jars() {
	resolve "$here/spark" "Spark Iceberg runtime"
	echo "$here/spark/target/libs"
}

case $cmd in
start) lock; do_start ;;
stop) lock; do_stop ;;
crash) lock; do_crash ;;
status) do_status ;;
logs) do_logs ;;
spark-jars) do_spark_jars ;;
-h | --help | help) usage ;;
*) die "unknown command: $cmd (start, stop, crash, status, logs, spark-jars)" ;;
esac
