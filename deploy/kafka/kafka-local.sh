#!/usr/bin/env bash
# kafka-local.sh: one real Apache Kafka 4 broker (KRaft, combined broker+controller)
# on 127.0.0.1, from Maven Central jars and the machine's Java. For CI and for
# users without Docker. See README.md beside this file.
#
#   kafka-local.sh start  [--port N] [--dir D] [--timeout S]
#   kafka-local.sh stop   [--dir D] [--keep] [--timeout S]
#   kafka-local.sh crash  [--dir D]   (SIGKILL, state kept: for recovery tests)
#   kafka-local.sh status [--dir D]
#   kafka-local.sh logs   [--dir D] [-f] [-n LINES]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
libs="$here/target/libs"

die() {
	echo "kafka-local: $*" >&2
	# A start that failed before making its state dir leaves no lock behind.
	[[ -n ${lockfile:-} && ! -e $dir ]] && rm -f "$lockfile"
	exit 1
}
say() { echo "kafka-local: $*" >&2; }

usage() {
	sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	cat >&2 <<'EOF'

Environment (flags win):
  FHIRSTREAM_KAFKA_PORT     broker port (default 9092); the controller uses port+1
  FHIRSTREAM_KAFKA_DIR      state dir: config, data, logs, pid (default $TMPDIR/fhirstream-kafka)
  FHIRSTREAM_KAFKA_TIMEOUT  seconds start waits for readiness (default 90; stop waits 60)
  FHIRSTREAM_KAFKA_HEAP     broker heap options (default "-Xms256m -Xmx768m")
  JAVA_HOME                 Java 17+ to run with (default: java on PATH)
EOF
	exit 2
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift

port=${FHIRSTREAM_KAFKA_PORT:-}
dir=${FHIRSTREAM_KAFKA_DIR:-${TMPDIR:-/tmp}/fhirstream-kafka}
timeout=${FHIRSTREAM_KAFKA_TIMEOUT:-}
heap=${FHIRSTREAM_KAFKA_HEAP:--Xms256m -Xmx768m}
stop_timeout=60
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

isnum() { [[ $1 =~ ^[0-9]+$ ]]; }
[[ -z $port ]] || { isnum "$port" && ((port > 0 && port < 65535)); } || die "bad port: $port"
[[ -z $timeout ]] || isnum "$timeout" || die "bad timeout: $timeout"
isnum "$stop_timeout" || die "bad timeout: $stop_timeout"
isnum "$lines" || die "bad line count: $lines"

# Everything the broker owns lives under $dir, so stop can remove it whole.
dir=${dir%/}
pidfile="$dir/kafka.pid"
portfile="$dir/port"
logdir="$dir/logs"

# --- helpers ---------------------------------------------------------------

find_java() {
	if [[ -n ${JAVA_HOME:-} ]]; then
		java="$JAVA_HOME/bin/java"
		[[ -x $java ]] || die "JAVA_HOME=$JAVA_HOME has no bin/java"
	else
		java=$(command -v java) || die "java not found: install a JDK 17+ (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
	fi
	local v
	v=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
	[[ -n $v ]] || die "cannot tell the version of $java"
	if ! [[ $v =~ ^[0-9]+$ ]] || ((v < 17)); then
		die "Kafka 4 needs Java 17+, $java is $v (set JAVA_HOME)"
	fi
}

# The jars are resolved again whenever pom.xml changes.
resolve_jars() {
	local sum
	sum=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
	if [[ -f $libs/.pom.sha256 && $(<"$libs/.pom.sha256") == "$sum" ]]; then
		return
	fi
	command -v mvn >/dev/null ||
		die "mvn not found: it fetches the Kafka jars once into ~/.m2 (apt-get install maven)"
	say "resolving Kafka jars with Maven into $libs"
	rm -rf "$libs"
	local t0=$EPOCHREALTIME
	mkdir -p "$here/target"
	if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies >"$here/target/mvn.log" 2>&1; then
		tail -n 40 "$here/target/mvn.log" >&2
		die "mvn dependency:copy-dependencies failed (log above, all in $here/target/mvn.log)"
	fi
	echo "$sum" >"$libs/.pom.sha256"
	say "jars resolved in $(since "$t0") s"
}

# pid of our broker if it runs, else nothing. The command line is checked so a
# recycled pid is never taken for the broker.
running_pid() {
	[[ -f $pidfile ]] || return 0
	local pid
	pid=$(<"$pidfile")
	isnum "$pid" || return 0
	[[ -r /proc/$pid/cmdline ]] || { kill -0 "$pid" 2>/dev/null && echo "$pid"; return 0; }
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "kafka.Kafka $dir/server.properties" && echo "$pid"
	return 0
}

# What 'kafka-storage random-uuid' prints (16 random bytes, URL-safe base64,
# never starting with '-'), without paying for a JVM.
new_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		[[ $id == -* ]] || break
	done
	echo "$id"
}

# Seconds since $1 (an EPOCHREALTIME), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

log_tail() {
	local f
	for f in "$logdir/kafka.out" "$logdir/server.log"; do
		[[ -s $f ]] || continue
		echo "---- last 40 lines of $f ----" >&2
		tail -n 40 "$f" >&2
	done
}

write_configs() {
	local cport=$1
	mkdir -p "$dir/data" "$logdir"
	cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/kafka-local.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data

# A single node: every internal topic must fit on it, or groups and
# transactions fail with COORDINATOR_NOT_AVAILABLE.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0

# Topics are made by 'fhirstream topics create', as in production; a typo in a
# topic name fails instead of silently making a topic.
auto.create.topics.enable=false

# Modest threads: CI machines have two cores.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
	cat >"$dir/log4j2.properties" <<EOF
# Broker logging: INFO to logs/server.log, chatty loggers at WARN.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $logdir/server.log
appender.file.filePattern = $logdir/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
EOF
	cat >"$dir/tools-log4j2.properties" <<'EOF'
# Command-line tools (the readiness probe): errors only, to stderr.
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = ERROR
rootLogger.appenderRef.err.ref = err
EOF
	cat >"$dir/probe.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# A real Kafka round trip: Metadata, then ApiVersions to every broker it names.
probe() {
	timeout 30 "$java" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
		-Dlog4j2.configurationFile="$dir/tools-log4j2.properties" \
		-cp "$libs/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
		--bootstrap-server "127.0.0.1:$port" --command-config "$dir/probe.properties" \
		>"$logdir/probe.out" 2>&1 &&
		grep -q "(id: 1 " "$logdir/probe.out"
}

# --- commands --------------------------------------------------------------

# Waits until the broker answers a real request. Returns 1 on timeout, dies
# if the broker exits.
wait_ready() {
	local launcher=$1 t0s=$SECONDS pid
	while :; do
		pid=$(running_pid)
		if [[ -z $pid ]] && ! kill -0 "$launcher" 2>/dev/null; then
			log_tail
			die "broker exited during start-up (logs above; all in $logdir)"
		fi
		if [[ -n $pid ]] && port_open "$port" && probe; then
			return 0
		fi
		((SECONDS - t0s < timeout)) || return 1
		sleep 1
	done
}

not_ready() {
	log_tail
	if [[ -s $logdir/probe.out ]]; then
		echo "---- last readiness probe ----" >&2
		tail -n 5 "$logdir/probe.out" >&2
	fi
	echo "kafka-local: broker not ready after ${timeout} s (logs above; all in $logdir)" >&2
}

# SIGTERM, then SIGKILL if the broker has not exited within $timeout seconds.
terminate() {
	local pid=$1 t0=$EPOCHREALTIME t0s=$SECONDS
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS - t0s >= timeout)); then
			say "no clean exit after ${timeout} s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 1
			break
		fi
		sleep 0.2
	done
	rm -f "$pidfile"
	say "stopped in $(since "$t0") s"
}

do_start() {
	local pid
	timeout=${timeout:-90}
	pid=$(running_pid)
	if [[ -n $pid ]]; then
		local running_port
		running_port=$(cat "$portfile" 2>/dev/null || echo "?")
		if [[ -n $port && $port != "$running_port" ]]; then
			die "a broker already runs from $dir on port $running_port (pid $pid), not $port: stop it or use another --dir"
		fi
		port=$running_port
		find_java
		resolve_jars
		wait_ready "$pid" || { not_ready; exit 1; }
		say "already running (pid $pid) from $dir"
		echo "127.0.0.1:$port"
		return 0
	fi
	port=${port:-9092}
	local cport=$((port + 1))
	port_open "$port" && die "port $port is in use by another program (try --port)"
	port_open "$cport" && die "controller port $cport is in use by another program (try --port)"

	find_java
	resolve_jars

	write_configs "$cport"
	echo "$port" >"$portfile"

	# Format once; a dir kept by 'stop --keep' starts with its data.
	if [[ ! -f $dir/data/meta.properties ]]; then
		[[ -f $dir/cluster.id ]] || new_cluster_id >"$dir/cluster.id"
		"$java" -cp "$libs/*" -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" \
			kafka.tools.StorageTool format --ignore-formatted \
			-t "$(<"$dir/cluster.id")" -c "$dir/server.properties" >"$logdir/format.out" 2>&1 || {
			cat "$logdir/format.out" >&2
			die "formatting storage in $dir/data failed"
		}
	fi

	local jar=("$libs"/kafka_2.13-*.jar) version
	version=${jar[0]##*/kafka_2.13-}
	say "starting Kafka ${version%.jar} on 127.0.0.1:$port (controller $cport), state in $dir"
	local t0=$EPOCHREALTIME
	# The inner bash writes its own pid and then becomes java, so the pid file
	# holds the broker's pid; setsid detaches it from the caller's terminal
	# (-w: if setsid must fork, it waits, so $! lives as long as the broker).
	# fd 9 is the lock: the broker must not inherit it.
	local detach=(nohup)
	command -v setsid >/dev/null && detach=(setsid -w)
	# shellcheck disable=SC2086,SC2016 # heap holds several options; $$ is the inner bash's
	"${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
		"$java" $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$logdir" \
		-cp "$libs/*" kafka.Kafka "$dir/server.properties" \
		</dev/null >"$logdir/kafka.out" 2>&1 9>&- &
	local launcher=$!

	if ! wait_ready "$launcher"; then
		not_ready
		# Start either succeeds or leaves nothing running; the state dir stays
		# for the logs.
		pid=$(running_pid)
		timeout=30
		[[ -n $pid ]] && terminate "$pid"
		kill -KILL "$launcher" 2>/dev/null || true
		die "start failed; state and logs kept in $dir ('$0 stop' removes them)"
	fi
	pid=$(running_pid)
	say "ready in $(since "$t0") s (pid $pid); logs: $logdir/server.log"
	echo "127.0.0.1:$port"
}

do_stop() {
	local pid
	pid=$(running_pid)
	timeout=$stop_timeout
	if [[ -n $pid ]]; then
		say "stopping broker (pid $pid)"
		terminate "$pid"
	else
		say "not running"
	fi
	rm -f "$pidfile"
	if [[ $keep == false ]]; then
		rm -f "$dir.lock"
	fi
	if [[ $keep == false && -d $dir ]]; then
		# Only remove what looks like our state dir.
		if [[ -f $dir/server.properties || -f $dir/port || -z $(ls -A "$dir") ]]; then
			rm -rf "$dir"
		else
			say "not removing $dir: it does not look like a kafka-local state dir"
		fi
	fi
}

# A crash: the broker dies at once (SIGKILL) and its state stays for the next start,
# which recovers it as after a power cut of the process (not of the disk).
do_crash() {
	local pid
	pid=$(running_pid)
	[[ -n $pid ]] || die "not running (state $dir)"
	kill -KILL "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	rm -f "$pidfile"
	say "killed broker (pid $pid); state kept in $dir"
}

do_status() {
	local pid
	pid=$(running_pid)
	if [[ -n $pid ]]; then
		echo "running (pid $pid) 127.0.0.1:$(cat "$portfile" 2>/dev/null || echo '?') state $dir"
	else
		echo "not running (state $dir)"
		return 3
	fi
}

do_logs() {
	[[ -f $logdir/server.log ]] || die "no log at $logdir/server.log"
	if [[ $follow == true ]]; then
		exec tail -n "$lines" -F "$logdir/server.log"
	fi
	tail -n "$lines" "$logdir/server.log"
}

# One command at a time per state dir.
lock() {
	command -v flock >/dev/null || return 0
	mkdir -p "$(dirname "$dir")"
	exec 9>"$dir.lock"
	flock -w 120 9 || die "another kafka-local.sh holds $dir.lock"
	lockfile="$dir.lock"
}

case $cmd in
start) lock; do_start ;;
stop) lock; do_stop ;;
crash) lock; do_crash ;;
status) do_status ;;
logs) do_logs ;;
-h | --help | help) usage ;;
*) die "unknown command: $cmd (start, stop, crash, status, logs)" ;;
esac
