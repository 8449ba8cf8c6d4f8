#!/bin/sh
# crash.sh for a sampled generation: SIGKILL the daemon in the middle of a generation with
# temperature 0.8, top-k/top-p and seed 42, start it again on the same state directory and
# continue the session with the same parameters and seed: the session keeps the sampler's
# random stream, so the tokens generated before the crash plus the continuation equal one
# uninterrupted `hyd run` with that seed, and what the killed client had received is a prefix
# of it.
. "$(dirname "$0")/lib.sh"
it_init
need_stories

PROMPT="Once upon a time"
NTOT=1800
SAMPLING="--temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --seed 42"
# shellcheck disable=SC2086 # SAMPLING is a list of options
sref() {
	timeout "$TMO" "$HYD" run -m "$1" -n "$2" $SAMPLING -t 1 -p "$3" || fail "hyd run failed"
}
sref "$STORIES" $NTOT "$PROMPT" >"$T/ref"
start_daemon crash --model "$STORIES" --threads 1

id=$(H session new) || fail "session new"
H --session "$id" -n 0 -p "$PROMPT" >/dev/null || fail "append"
n0=$(session_tokens "$id")

# shellcheck disable=SC2086
"$HYD" --socket "$SOCK" --session "$id" -n $NTOT $SAMPLING </dev/null >"$T/partial" 2>"$T/client.log" &
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

# shellcheck disable=SC2086
H --session "$id" -n $((NTOT - k)) $SAMPLING </dev/null >"$T/cont" || fail "continuing after the restart"
sref "$STORIES" $k "$PROMPT" | head -c -1 >"$T/total"
cat "$T/cont" >>"$T/total"
same_file "$T/ref" "$T/total" "generated-before-crash + continuation vs uninterrupted (seed 42)"
log "PASS"
