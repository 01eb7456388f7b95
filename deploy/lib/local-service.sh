# local-service.sh: what deploy/kafka/kafka-local.sh and
# deploy/iceberg/iceberg-rest-local.sh share, sourced by both: one JVM service per
# state dir, found by its pid file and its command line, started, probed, stopped,
# crashed, and one command at a time per state dir. Not run on its own.
#
# The sourcing script sets, before calling these:
#   svc_name      the script's name in messages (kafka-local)
#   svc_role      what runs (broker, server)
#   svc_cmdline   a string the service's command line holds, naming its state dir,
#                 so that a recycled pid or another dir's service is never taken for ours
#   svc_logs      the log files whose tails explain a failed start, in order
#   svc_poll      seconds between readiness probes
#   svc_addr      what status prints before the port (127.0.0.1:, http://127.0.0.1:)
#   svc_markers   files of which one is in a state dir of ours (stop removes only such a dir)
#   dir pidfile portfile logdir timeout stop_timeout keep follow lines
# and defines probe (one real request to the service; its output in $logdir/probe.out).

die() {
	echo "$svc_name: $*" >&2
	# A start that failed before making its state dir leaves no lock behind.
	[[ -n ${lockfile:-} && ! -e $dir ]] && rm -f "$lockfile"
	exit 1
}
say() { echo "$svc_name: $*" >&2; }

isnum() { [[ $1 =~ ^[0-9]+$ ]]; }

# Sets java to a Java 17+ (JAVA_HOME's, else the PATH's); $1 names who needs it.
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
		die "$1 needs Java 17+, $java is $v (set JAVA_HOME)"
	fi
}

# pid of our service if it runs, else nothing.
running_pid() {
	[[ -f $pidfile ]] || return 0
	local pid
	pid=$(<"$pidfile")
	isnum "$pid" || return 0
	[[ -r /proc/$pid/cmdline ]] || { kill -0 "$pid" 2>/dev/null && echo "$pid"; return 0; }
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$svc_cmdline" && echo "$pid"
	return 0
}

# Seconds since $1 (an EPOCHREALTIME), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

log_tail() {
	local f
	for f in "${svc_logs[@]}"; do
		[[ -s $logdir/$f ]] || continue
		echo "---- last 40 lines of $logdir/$f ----" >&2
		tail -n 40 "$logdir/$f" >&2
	done
}

# Waits until the service answers probe. Returns 1 on timeout, dies if the service
# exits; $1 is the launcher's pid.
wait_ready() {
	local launcher=$1 t0s=$SECONDS pid
	while :; do
		pid=$(running_pid)
		if [[ -z $pid ]] && ! kill -0 "$launcher" 2>/dev/null; then
			log_tail
			die "$svc_role exited during start-up (logs above; all in $logdir)"
		fi
		if [[ -n $pid ]] && port_open "$port" && probe; then
			return 0
		fi
		((SECONDS - t0s < timeout)) || return 1
		sleep "$svc_poll"
	done
}

not_ready() {
	log_tail
	if [[ -s $logdir/probe.out ]]; then
		echo "---- last readiness probe ----" >&2
		tail -n 5 "$logdir/probe.out" >&2
	fi
	echo "$svc_name: $svc_role not ready after ${timeout} s (logs above; all in $logdir)" >&2
}

# SIGTERM, then SIGKILL if the service has not exited within $timeout seconds.
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

# Stops the service and, unless --keep, removes its state dir (only one that looks
# like ours: it holds one of svc_markers, or is empty).
do_stop() {
	local pid
	pid=$(running_pid)
	timeout=$stop_timeout
	if [[ -n $pid ]]; then
		say "stopping $svc_role (pid $pid)"
		terminate "$pid"
	else
		say "not running"
	fi
	rm -f "$pidfile"
	if [[ $keep == false ]]; then
		rm -f "$dir.lock"
	fi
	if [[ $keep == false && -d $dir ]]; then
		local m ours=false
		for m in "${svc_markers[@]}"; do
			[[ -f $dir/$m ]] && ours=true
		done
		if [[ $ours == true || -z $(ls -A "$dir") ]]; then
			rm -rf "$dir"
		else
			say "not removing $dir: it does not look like a state dir of $svc_name.sh"
		fi
	fi
}

# A crash: the service dies at once (SIGKILL) and its state stays for the next start,
# which recovers it as after a power cut of the process (not of the disk).
do_crash() {
	local pid
	pid=$(running_pid)
	[[ -n $pid ]] || die "not running (state $dir)"
	kill -KILL "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	rm -f "$pidfile"
	say "killed $svc_role (pid $pid); state kept in $dir"
}

do_status() {
	local pid
	pid=$(running_pid)
	if [[ -n $pid ]]; then
		echo "running (pid $pid) $svc_addr$(cat "$portfile" 2>/dev/null || echo '?') state $dir"
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
	flock -w 120 9 || die "another $svc_name.sh holds $dir.lock"
	lockfile="$dir.lock"
}
