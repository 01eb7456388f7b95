#!/usr/bin/env bash
# kafka-local.sh: one real Apache Kafka 4 broker (KRaft, combined broker+controller)
# on 127.0.0.1, from Maven Central jars and the machine's Java. For CI and for
# users without Docker. See README.md beside this file.
#
#   kafka-local.sh start  [--port N] [--dir D] [--timeout S] [--security plaintext|secure]
#   kafka-local.sh stop   [--dir D] [--keep] [--timeout S]
#   kafka-local.sh crash  [--dir D]   (SIGKILL, state kept: for recovery tests)
#   kafka-local.sh status [--dir D]
#   kafka-local.sh logs   [--dir D] [-f] [-n LINES]
#   kafka-local.sh cert   NAME [--dir D]   (secure: a client certificate, CN=NAME)
#   kafka-local.sh info   [--dir D]        (secure: where the CA, certs, credentials are)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
libs="$here/target/libs"
svc_name=kafka-local svc_role=broker svc_poll=1 svc_addr=127.0.0.1:
svc_logs=(kafka.out server.log)
# shellcheck source=../lib/local-service.sh
. "$here/../lib/local-service.sh"

usage() {
	sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	cat >&2 <<'EOF'

Environment (flags win):
  FHIRSTREAM_KAFKA_PORT     broker port (default 9092); the controller uses port+1
  FHIRSTREAM_KAFKA_DIR      state dir: config, data, logs, pid (default $TMPDIR/fhirstream-kafka)
  FHIRSTREAM_KAFKA_TIMEOUT  seconds start waits for readiness (default 90; stop waits 60)
  FHIRSTREAM_KAFKA_HEAP     broker heap options (default "-Xms1g -Xmx1g", Kafka's own)
  FHIRSTREAM_KAFKA_SECURITY plaintext (default) or secure: SASL_SSL (SCRAM-SHA-512,
                            OAUTHBEARER) on the port, mTLS on port+2, ACLs enforced
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
heap=${FHIRSTREAM_KAFKA_HEAP:--Xms1g -Xmx1g}
security=${FHIRSTREAM_KAFKA_SECURITY:-}
name=""
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
	--security) security=${2:?--security needs a value}; shift ;;
	--security=*) security=${1#*=} ;;
	-h | --help) usage ;;
	-*) die "unknown argument: $1 (try --help)" ;;
	*)
		[[ $cmd == cert && -z $name ]] || die "unknown argument: $1 (try --help)"
		name=$1
		;;
	esac
	shift
done

[[ -z $port ]] || { isnum "$port" && ((port > 0 && port < 65535)); } || die "bad port: $port"
[[ -z $timeout ]] || isnum "$timeout" || die "bad timeout: $timeout"
isnum "$stop_timeout" || die "bad timeout: $stop_timeout"
isnum "$lines" || die "bad line count: $lines"
case ${security:-plaintext} in
plaintext | secure) ;;
*) die "bad --security: $security (plaintext or secure)" ;;
esac

# Everything the broker owns lives under $dir, so stop can remove it whole.
dir=${dir%/}
pidfile="$dir/kafka.pid"
portfile="$dir/port"
logdir="$dir/logs"
secdir="$dir/security"
modefile="$dir/security.mode"
svc_cmdline="kafka.Kafka $dir/server.properties"
svc_markers=(server.properties port)

# --- helpers ---------------------------------------------------------------

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

# --- secure mode: a throwaway CA, certificates, credentials ------------------

# Random hex of $1 bytes.
random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Signs a certificate for CN=$1 with the CA: $secdir/$1.pem (certificate) and
# $1-key.pem (unencrypted PKCS#8 key, mode 0600). EC P-256: fast to make, and
# both Java and Go take it. The SANs make it valid as a server certificate for
# 127.0.0.1 and localhost too (the broker's own, used by the controller link).
issue_cert() {
	local cn=$1 out="$secdir/$1" ext
	[[ $cn =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "bad certificate name: $cn (1-64 of letters, digits, . _ -)"
	[[ -f $secdir/ca-key.pem ]] || die "no CA in $secdir: start the broker with --security secure first"
	ext=$(mktemp "$secdir/.ext.XXXXXX")
	printf '%s\n' "basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth,clientAuth" \
		"subjectAltName=IP:127.0.0.1,DNS:localhost" >"$ext"
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out-key.pem" 2>"$secdir/openssl.err") ||
		{ cat "$secdir/openssl.err" >&2; die "openssl: making the key of $cn failed"; }
	{ openssl req -new -key "$out-key.pem" -subj "/CN=$cn" -out "$out.csr" &&
		openssl x509 -req -in "$out.csr" -CA "$secdir/ca.pem" -CAkey "$secdir/ca-key.pem" \
			-set_serial "0x$(random_hex 16)" -days 30 -extfile "$ext" -out "$out.pem"; } 2>"$secdir/openssl.err" ||
		{ cat "$secdir/openssl.err" >&2; die "openssl: signing the certificate of $cn failed"; }
	rm -f "$ext" "$out.csr" "$secdir/openssl.err"
}

# The throwaway PKI and credentials of a secure broker, made once per state dir
# (what 'info' lists).
make_security() {
	[[ -f $secdir/admin.password ]] && return 0
	command -v openssl >/dev/null || die "openssl not found: the secure mode makes its CA with it (apt-get install openssl)"
	rm -rf "$secdir"
	mkdir -p "$secdir"
	chmod 700 "$secdir"
	(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$secdir/ca-key.pem" -out "$secdir/ca.pem" -days 30 \
		-subj "/CN=fhirstream kafka-local CA $(random_hex 4)" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$secdir/openssl.err") ||
		{ cat "$secdir/openssl.err" >&2; die "openssl: making the CA failed"; }
	issue_cert broker
	issue_cert admin
	(umask 077 && cat "$secdir/broker-key.pem" "$secdir/broker.pem" >"$secdir/broker-keystore.pem")
	(umask 077 && cat "$secdir/admin-key.pem" "$secdir/admin.pem" >"$secdir/admin-keystore.pem")
	(umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$secdir/oidc-key.pem" 2>/dev/null) ||
		die "openssl: making the OIDC signing key failed"
	# The JWKS of the OIDC key: modulus and exponent, base64url without padding (RFC 7517).
	local n e
	n=$(openssl rsa -in "$secdir/oidc-key.pem" -noout -modulus 2>/dev/null | cut -d= -f2 | xxd -r -p | base64 -w0 | tr '+/' '-_' | tr -d '=')
	e=$(printf '\001\000\001' | base64 | tr -d '=')
	[[ -n $n ]] || die "openssl: reading the OIDC key failed"
	printf '{"keys":[{"kty":"RSA","kid":"kafka-local","use":"sig","alg":"RS256","n":"%s","e":"%s"}]}\n' "$n" "$e" >"$secdir/jwks.json"
	(umask 077 && random_hex 18 >"$secdir/admin.password")
}

# Client settings of the admin: env files for fhirstream, properties for Kafka's
# own tools (kafka-acls.sh --command-config). Rewritten on every start (the port
# may change).
write_client_files() {
	local mport=$((port + 2)) pw mask
	pw=$(<"$secdir/admin.password")
	mask=$(umask)
	umask 077
	printf '%s\n' "FHIRSTREAM_BROKERS=127.0.0.1:$port" "FHIRSTREAM_SASL_MECHANISM=SCRAM-SHA-512" \
		"FHIRSTREAM_SASL_USER=admin" "FHIRSTREAM_SASL_PASSWORD=$pw" "FHIRSTREAM_TLS_CA=$secdir/ca.pem" \
		>"$secdir/admin-sasl.env"
	printf '%s\n' "FHIRSTREAM_BROKERS=127.0.0.1:$mport" "FHIRSTREAM_TLS_CA=$secdir/ca.pem" \
		"FHIRSTREAM_TLS_CERT=$secdir/admin.pem" "FHIRSTREAM_TLS_KEY=$secdir/admin-key.pem" \
		>"$secdir/admin-mtls.env"
	printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
		"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$pw\";" \
		"ssl.truststore.type=PEM" "ssl.truststore.location=$secdir/ca.pem" \
		>"$secdir/admin-sasl.properties"
	printf '%s\n' "security.protocol=SSL" "ssl.truststore.type=PEM" "ssl.truststore.location=$secdir/ca.pem" \
		"ssl.keystore.type=PEM" "ssl.keystore.location=$secdir/admin-keystore.pem" \
		>"$secdir/admin-mtls.properties"
	umask "$mask"
}

# The listeners and security settings of server.properties.
listener_config() {
	local cport=$1 mport=$(($1 + 1))
	if [[ $security != secure ]]; then
		cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
		return
	fi
	cat <<EOF
# Secure mode: nothing in plain text. Clients use SASL_SSL on $port (SCRAM-SHA-512
# or OAUTHBEARER) or mutual TLS on $mport; the controller link and the
# inter-broker listener are mutual TLS with the broker's own certificate.
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,MTLS://127.0.0.1:$mport
advertised.listeners=SASL_SSL://127.0.0.1:$port,MTLS://127.0.0.1:$mport
inter.broker.listener.name=MTLS
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL,MTLS:SSL

ssl.keystore.type=PEM
ssl.keystore.location=$secdir/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secdir/ca.pem
ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
# A certificate's principal is its CN: CN=validate is User:validate.
ssl.principal.mapping.rules=RULE:^CN=([^,]+)(,.*)?\$/\$1/,DEFAULT

sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
sasl.oauthbearer.jwks.endpoint.url=file://$secdir/jwks.json
sasl.oauthbearer.expected.audience=kafka-local
sasl.oauthbearer.expected.issuer=kafka-local

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# The admin (SCRAM user admin, certificate CN=admin) is for operators and test
# harnesses, the broker for its controller link; every other client gets ACLs.
super.users=User:admin;User:broker
EOF
}

write_configs() {
	local cport=$1
	mkdir -p "$dir/data" "$logdir"
	cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/kafka-local.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
$(listener_config "$cport")
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
	if [[ $security == secure ]]; then
		cat "$secdir/admin-mtls.properties" >>"$dir/probe.properties"
	fi
}

# A real Kafka round trip: Metadata, then ApiVersions to every broker it names.
# A secure broker is probed as the admin, over mutual TLS.
probe() {
	local probe_port=$port
	[[ $security == secure ]] && probe_port=$((port + 2))
	timeout 30 "$java" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
		-Dlog4j2.configurationFile="$dir/tools-log4j2.properties" \
		-cp "$libs/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
		--bootstrap-server "127.0.0.1:$probe_port" --command-config "$dir/probe.properties" \
		>"$logdir/probe.out" 2>&1 &&
		grep -q "(id: 1 " "$logdir/probe.out"
}

# --- commands --------------------------------------------------------------

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
		local running_mode
		running_mode=$(cat "$modefile" 2>/dev/null || echo plaintext)
		if [[ -n $security && $security != "$running_mode" ]]; then
			die "a broker already runs from $dir in $running_mode mode, not $security: stop it or use another --dir"
		fi
		security=$running_mode
		find_java "Kafka 4"
		resolve_jars
		wait_ready "$pid" || { not_ready; exit 1; }
		say "already running (pid $pid) from $dir"
		echo "127.0.0.1:$port"
		return 0
	fi
	# A kept state dir restarts in the mode it was formatted in: a plaintext one has
	# no admin credentials, a secure one's data has ACLs only its principals fit.
	if [[ -f $dir/data/meta.properties ]]; then
		local kept_mode
		kept_mode=$(cat "$modefile" 2>/dev/null || echo plaintext)
		if [[ -n $security && $security != "$kept_mode" ]]; then
			die "$dir holds a $kept_mode broker's data, not a $security one: use another --dir, or stop without --keep first"
		fi
		security=$kept_mode
	fi
	security=${security:-plaintext}
	port=${port:-9092}
	local cport=$((port + 1)) mport=$((port + 2))
	port_open "$port" && die "port $port is in use by another program (try --port)"
	port_open "$cport" && die "controller port $cport is in use by another program (try --port)"
	if [[ $security == secure ]]; then
		port_open "$mport" && die "mTLS port $mport is in use by another program (try --port)"
	fi

	find_java "Kafka 4"
	resolve_jars

	mkdir -p "$dir"
	if [[ $security == secure ]]; then
		make_security
		write_client_files
	fi
	write_configs "$cport"
	echo "$port" >"$portfile"
	echo "$security" >"$modefile"

	# Format once; a dir kept by 'stop --keep' starts with its data.
	if [[ ! -f $dir/data/meta.properties ]]; then
		[[ -f $dir/cluster.id ]] || new_cluster_id >"$dir/cluster.id"
		# A secure broker's admin is a SCRAM user from the start: users made at
		# format time exist before any client connects.
		local scram=()
		[[ $security == secure ]] &&
			scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(<"$secdir/admin.password")]")
		"$java" -cp "$libs/*" -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" \
			kafka.tools.StorageTool format --ignore-formatted "${scram[@]}" \
			-t "$(<"$dir/cluster.id")" -c "$dir/server.properties" >"$logdir/format.out" 2>&1 || {
			cat "$logdir/format.out" >&2
			die "formatting storage in $dir/data failed"
		}
	fi

	local jar=("$libs"/kafka_2.13-*.jar) version
	version=${jar[0]##*/kafka_2.13-}
	say "starting Kafka ${version%.jar} on 127.0.0.1:$port (controller $cport), $security, state in $dir"
	local t0=$EPOCHREALTIME
	# The inner bash writes its own pid and then becomes java, so the pid file
	# holds the broker's pid; setsid detaches it from the caller's terminal
	# (-w: if setsid must fork, it waits, so $! lives as long as the broker).
	# fd 9 is the lock: the broker must not inherit it.
	local detach=(nohup)
	command -v setsid >/dev/null && detach=(setsid -w)
	# The collector as Kafka runs it: its launcher's G1 settings (kafka-run-class.sh)
	# and its operations guide's 16 MiB regions. With G1's own choice for a 1 GiB heap,
	# 1 MiB regions, a request over 512 KiB (a produce request carries up to 8 MiB per
	# partition here) is a humongous object, and the broker spent about half as much
	# CPU again per resource (docs/performance.md).
	local gc=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
		-XX:G1HeapRegionSize=16M -XX:+ExplicitGCInvokesConcurrent)
	# shellcheck disable=SC2086,SC2016 # heap holds several options; $$ is the inner bash's
	"${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
		"$java" $heap "${gc[@]}" -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$logdir" \
		-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls="file://$secdir/jwks.json" \
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
	[[ $security == secure ]] && do_info >&2
	echo "127.0.0.1:$port"
}

# Where a secure broker's CA, certificates and credentials are.
do_info() {
	local mode p
	mode=$(cat "$modefile" 2>/dev/null || echo plaintext)
	p=$(cat "$portfile" 2>/dev/null || echo '?')
	if [[ $mode != secure ]]; then
		echo "plaintext broker on 127.0.0.1:$p (state $dir): no TLS, no SASL, no ACLs"
		return 0
	fi
	cat <<EOF
secure broker (state $dir), ACLs enforced (allow.everyone.if.no.acl.found=false)
  SASL_SSL  127.0.0.1:$p   SCRAM-SHA-512, OAUTHBEARER (RS256 JWTs, iss and aud kafka-local)
  mTLS      127.0.0.1:$((p + 2))   client certificates of the CA; principal = User:<CN>
  CA                 $secdir/ca.pem (key $secdir/ca-key.pem)
  super user admin   SCRAM password in $secdir/admin.password; certificate $secdir/admin.pem, $secdir/admin-key.pem
  admin for fhirstream:      set -a; . $secdir/admin-sasl.env; set +a   (or admin-mtls.env)
  admin for kafka-acls.sh:   --command-config $secdir/admin-sasl.properties (or admin-mtls.properties)
  OAUTHBEARER signing key    $secdir/oidc-key.pem (JWKS $secdir/jwks.json)
  a client certificate:      $0 cert NAME --dir $dir   -> $secdir/NAME.pem, NAME-key.pem
  SCRAM users beyond admin:  create them with the admin (kadm AlterUserSCRAMs, kafka-configs.sh)
EOF
}

# A client certificate for the principal User:$name, signed by the broker's CA.
do_cert() {
	[[ -n $name ]] || die "cert needs a NAME (the certificate's CN, and so its principal)"
	[[ $(cat "$modefile" 2>/dev/null) == secure ]] || die "$dir is not a secure broker's state dir (start --security secure)"
	issue_cert "$name"
	echo "$secdir/$name.pem $secdir/$name-key.pem"
}

case $cmd in
start) lock; do_start ;;
stop) lock; do_stop ;;
crash) lock; do_crash ;;
status) do_status ;;
info) do_info ;;
cert) lock; do_cert ;;
logs) do_logs ;;
-h | --help | help) usage ;;
*) die "unknown command: $cmd (start, stop, crash, status, logs, cert, info)" ;;
esac
