#!/bin/sh
# (c) SIGKILL the daemon in the middle of a generation, start it again on the same state
# directory and continue the same session: the text of the tokens generated before the crash
# plus the continuation equals one uninterrupted `hyd run`, and what the killed client had
# received is a prefix of it.
. "$(dirname "$0")/lib.sh"
it_init
need_stories

PROMPT="Once upon a time"
NTOT=1800
ref "$STORIES" $NTOT "$PROMPT" >"$T/ref"
start_daemon crash --model "$STORIES" --threads 1

id=$(H session new) || fail "session new"
H --session "$id" -n 0 -p "$PROMPT" >/dev/null || fail "append"
n0=$(session_tokens "$id")

"$HYD" --socket "$SOCK" --session "$id" -n $NTOT --temp 0 </dev/null >"$T/partial" 2>"$T/client.log" &
cpid=$!
i=0
while [ ! -s "$T/partial" ]; do
	kill -0 "$cpid" 2>/dev/null || fail "the client ended before any output"
	i=$((i + 1))
	[ $i -lt $((TMO * 100)) ] || fail "no output within $TMO s"
	sleep 0.01
done
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null
wait "$cpid"
crc=$?
[ $crc = 3 ] || fail "the client exited $crc when the daemon died (expected 3, daemon unreachable)"
# prove the kill happened mid-generation: the client cannot have printed the whole text
[ "$(wc -c <"$T/partial")" -lt "$(wc -c <"$T/ref")" ] || fail "the generation finished before the kill"
cmp -s -n "$(wc -c <"$T/partial")" "$T/partial" "$T/ref" ||
	fail "what the client received before the crash is not a prefix of the uninterrupted run"

start_daemon crash --model "$STORIES" --threads 1
H session list >"$T/list" || fail "session list after restart"
grep -q "^$id " "$T/list" || fail "session $id is gone after the restart: $(cat "$T/list")"
n1=$(session_tokens "$id")
k=$((n1 - n0))
log "crash after $k committed tokens ($(wc -c <"$T/partial") bytes seen by the client)"
[ $k -ge 0 ] && [ $k -lt $NTOT ] || fail "odd token count after restart: $n1 (prompt $n0)"

H --session "$id" -n $((NTOT - k)) --temp 0 </dev/null >"$T/cont" || fail "continuing after the restart"
ref "$STORIES" $k "$PROMPT" | head -c -1 >"$T/total"
cat "$T/cont" >>"$T/total"
same_file "$T/ref" "$T/total" "generated-before-crash + continuation vs uninterrupted"
log "PASS"
