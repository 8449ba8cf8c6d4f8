# Shared helpers of the integration tests (sourced).  Each test starts its own hydd on a private
# temporary directory (socket, state dir, log) and the EXIT trap kills every daemon it started.
# Exit codes: 0 pass, 1 fail, 77 skip (missing data or binaries; a failure when CI=true).

set -u

BUILDDIR=${HYD_BUILDDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HYD="$BUILDDIR/hyd"
HYDD="$BUILDDIR/hydd"
DATA=${HYD_TEST_DATA:-/work/shared}
STORIES="$DATA/models/stories260K.gguf"
TEST_NAME=$(basename "$0" .sh)
T=""
DAEMON_PIDS=""
# generous: a loaded 2-core machine may be slow, but a hang must still end
TMO=${HYD_IT_TIMEOUT:-300}

log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }

skip() {
	if [ "${CI:-}" = true ]; then
		log "FAIL (CI): $*"
		exit 1
	fi
	log "SKIP: $*"
	exit 77
}

fail() {
	log "FAIL: $*"
	if [ -n "$T" ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "---- $f (last 30 lines)" >&2
			tail -n 30 "$f" >&2
		done
	fi
	exit 1
}

cleanup() {
	rc=$?
	for p in $DAEMON_PIDS; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ -n "$T" ] && [ -d "$T" ] && rm -rf "$T"
	exit $rc
}

it_init() {
	[ -x "$HYD" ] || skip "no $HYD"
	[ -x "$HYDD" ] || skip "no $HYDD (the daemon is not built)"
	T=$(mktemp -d "${TMPDIR:-/tmp}/hyd-it-$TEST_NAME.XXXXXX") || exit 1
	trap cleanup EXIT
	trap 'exit 1' INT TERM HUP
	# never talk to a daemon of the user's session by accident
	export XDG_RUNTIME_DIR="$T/run"
	mkdir -m 700 "$XDG_RUNTIME_DIR"
	unset HYD_SOCKET
}

need_stories() {
	[ -r "$STORIES" ] || skip "missing $STORIES (set HYD_TEST_DATA)"
}

# start_daemon NAME [hydd options...]: socket $T/NAME.sock, state dir $T/NAME.state (kept across
# restarts of the same NAME), log $T/NAME.log; sets DPID and SOCK; waits until it answers.
start_daemon() {
	name=$1
	shift
	SOCK="$T/$name.sock"
	mkdir -p -m 700 "$T/$name.state"
	"$HYDD" --foreground --socket "$SOCK" --state-dir "$T/$name.state" "$@" >>"$T/$name.log" 2>&1 &
	DPID=$!
	DAEMON_PIDS="$DAEMON_PIDS $DPID"
	i=0
	while ! "$HYD" --socket "$SOCK" status >/dev/null 2>&1; do
		kill -0 "$DPID" 2>/dev/null || fail "hydd ($name) exited while starting"
		i=$((i + 1))
		[ $i -lt $((TMO * 10)) ] || fail "hydd ($name) did not answer within $TMO s"
		sleep 0.1
	done
}

# stop_daemon PID: SIGTERM and wait (SIGKILL after the timeout).
stop_daemon() {
	kill -TERM "$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -ge $((TMO * 10)) ]; then
			kill -KILL "$1" 2>/dev/null
			break
		fi
		sleep 0.1
	done
	wait "$1" 2>/dev/null
}

# ref MODEL N PROMPT: hyd run's greedy output in-process (no daemon)
ref() {
	timeout "$TMO" "$HYD" run -m "$1" -n "$2" --temp 0 -t 1 -p "$3" || fail "hyd run failed"
}

# hyd through the daemon with a timeout
H() {
	timeout "$TMO" "$HYD" --socket "$SOCK" "$@"
}

# same_file A B WHAT
same_file() {
	if ! cmp -s "$1" "$2"; then
		echo "---- expected ($1):" >&2
		od -c "$1" | head -n 20 >&2
		echo "---- got ($2):" >&2
		od -c "$2" | head -n 20 >&2
		fail "$3: output differs"
	fi
}

# session_tokens ID: committed tokens of a session (from hyd session show)
session_tokens() {
	H session show "$1" | awk '$1 == "tokens:" { print $2 }'
}
