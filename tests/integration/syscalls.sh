#!/bin/sh
# (g) The data plane makes no syscall per token while busy.  A client that keeps polling
# (HYD_SPIN_NS: it spins instead of sleeping) streams a long greedy generation; then
#  - the ring counters: futex wakes/sleeps of both sides per generated token must be far below 1;
#  - strace -c -f on the daemon over the same kind of generation (when ptrace is allowed): all
#    syscalls of the daemon per generated token must be far below 1.
. "$(dirname "$0")/lib.sh"
it_init
need_stories
RS="$BUILDDIR/tests/integration/ring_stats"
[ -x "$RS" ] || skip "no $RS"
start_daemon sys --model "$STORIES" --threads 1

N=1500
HYD_SPIN_NS=5000000000 timeout "$TMO" "$RS" "$SOCK" "Once upon a time" $N >"$T/stats" || fail "ring_stats failed"
cat "$T/stats" >&2
set -- $(tr -s ' \n' ' ' <"$T/stats")
# tokens X generated Y req_msgs A req_wakes B req_daemon_sleeps C evt_msgs D evt_wakes E evt_client_sleeps F
tokens=$2 rw=${8} rs=${10} ew=${14} es=${16}
[ "$tokens" -ge $((N / 2)) ] || fail "only $tokens tokens arrived"
wakes=$((rw + rs + ew + es))
# far below one per token: at most one per 20 tokens
[ $((wakes * 20)) -le "$tokens" ] || fail "$wakes futex wakes/sleeps for $tokens tokens"
log "ring counters: $wakes futex wakes/sleeps for $tokens tokens"

if ! command -v strace >/dev/null 2>&1; then
	log "no strace: ring counters only"
	log "PASS"
	exit 0
fi
strace -f -c -o "$T/strace.txt" -p "$DPID" 2>"$T/strace.log" &
spid=$!
i=0
until grep -q attached "$T/strace.log" 2>/dev/null; do
	if ! kill -0 "$spid" 2>/dev/null; then
		log "strace cannot attach ($(cat "$T/strace.log")): ring counters only"
		log "PASS"
		exit 0
	fi
	i=$((i + 1))
	[ $i -lt $((TMO * 10)) ] || fail "strace did not attach"
	sleep 0.1
done
HYD_SPIN_NS=5000000000 timeout "$TMO" "$RS" "$SOCK" "Once upon a time" $N >"$T/stats2" || fail "ring_stats under strace failed"
kill -INT "$spid"
wait "$spid"
cat "$T/strace.txt" >&2
tokens=$(awk '{ print $2; exit }' "$T/stats2")
calls=$(awk '$NF == "total" { print $4 + 0 }' "$T/strace.txt")
grow=$(awk '$NF == "fallocate" { print $4 + 0 }' "$T/strace.txt")
[ -n "$calls" ] || calls=0
[ -n "$grow" ] || grow=0
log "strace: $calls daemon syscalls (connection, requests and all; $grow fallocate growing the session's pages) for $tokens tokens"
[ "$tokens" -ge $((N / 2)) ] || fail "only $tokens tokens arrived under strace"
# everything included (handshake, create, append, page growth, teardown): < 1 per 5 tokens
[ $((calls * 5)) -le "$tokens" ] || fail "$calls syscalls for $tokens tokens"
# and without the page growth (one per page of tokens, not per token): < 1 per 20 tokens
[ $(((calls - grow) * 20)) -le "$tokens" ] || fail "$((calls - grow)) syscalls besides page growth for $tokens tokens"
log "PASS"
