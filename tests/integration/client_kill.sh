#!/bin/sh
# (d) SIGKILL a client in the middle of its stream: another client streaming at the same time
# gets its complete, correct output, the daemon keeps running, and the dead client's session
# can be used again afterwards.
. "$(dirname "$0")/lib.sh"
it_init
need_stories
start_daemon ck --model "$STORIES" --threads 1

P1="Once upon a time"
P2="The little dog"
N2=400
ref "$STORIES" $N2 "$P2" >"$T/ref2"
ref "$STORIES" 32 "$P1" >"$T/ref1"
H session new victim >/dev/null || fail "session new"
H session new other >/dev/null || fail "session new"

"$HYD" --socket "$SOCK" --session victim -n 1800 --temp 0 -p "$P1" >"$T/victim" 2>/dev/null &
vpid=$!
(H --session other -n $N2 --temp 0 -p "$P2" >"$T/other" 2>"$T/other.err"; echo $? >"$T/other.rc") &
opid=$!
i=0
while [ ! -s "$T/victim" ]; do
	kill -0 "$vpid" 2>/dev/null || fail "the victim ended before any output"
	i=$((i + 1))
	[ $i -lt $((TMO * 100)) ] || fail "no output within $TMO s"
	sleep 0.01
done
kill -KILL "$vpid"
wait "$vpid" 2>/dev/null
wait "$opid"
[ "$(cat "$T/other.rc")" = 0 ] || fail "the other client failed: $(cat "$T/other.err")"
same_file "$T/ref2" "$T/other" "the other client's stream"
kill -0 "$DPID" 2>/dev/null || fail "the daemon died"

# the victim's session is released (its generation cancelled) and usable again; the daemon
# may need a moment to notice the dead client, so retry while it says busy
i=0
while ! H --session victim -n 4 --temp 0 </dev/null >/dev/null 2>"$T/retry.err"; do
	grep -q busy "$T/retry.err" || fail "using the victim's session again: $(cat "$T/retry.err")"
	i=$((i + 1))
	[ $i -lt $((TMO * 10)) ] || fail "the victim's session stays busy"
	sleep 0.1
done
# and new work is still served correctly
id=$(H session new) || fail "session new after the kill"
H --session "$id" -n 32 --temp 0 -p "$P1" >"$T/after" || fail "completion after the kill"
same_file "$T/ref1" "$T/after" "completion after the kill"
log "PASS"
