#!/bin/sh
# (b) 8 client processes, each on its own session with its own prompt, generate at the same time;
# every output must equal that prompt's `hyd run` result, and each session must hold exactly
# its own prompt + completion (no cross-talk).
. "$(dirname "$0")/lib.sh"
it_init
need_stories
start_daemon conc --model "$STORIES" --threads 2

N=96
set -- "Once upon a time" "The little dog" "Lily and Ben went to the park" "One day, a bird" \
	"Tom had a big red ball" "The sun was hot" "Mom said" "There was a girl named Sue"
i=0
for p in "$@"; do
	ref "$STORIES" $N "$p" >"$T/ref$i"
	i=$((i + 1))
done
i=0
for p in "$@"; do
	H session new "c$i" >/dev/null || fail "session new"
	i=$((i + 1))
done
i=0
pids=""
for p in "$@"; do
	(printf '%s\n' "$p" | H --session "c$i" -n $N --temp 0 >"$T/out$i" 2>"$T/err$i"; echo $? >"$T/rc$i") &
	pids="$pids $!"
	i=$((i + 1))
done
for p in $pids; do
	wait "$p"
done
i=0
for p in "$@"; do
	[ "$(cat "$T/rc$i")" = 0 ] || fail "client $i failed: $(cat "$T/err$i")"
	same_file "$T/ref$i" "$T/out$i" "client $i ('$p')"
	# the session holds BOS + prompt + the generated tokens (the last one may stay uncommitted)
	np=$(printf '%s' "$p" | "$HYD" tokenize -m "$STORIES" | wc -w)
	nt=$(session_tokens "c$i")
	[ "$nt" -ge $((np + N - 1)) ] && [ "$nt" -le $((np + N)) ] ||
		fail "session c$i holds $nt tokens, expected $((np + N - 1))..$((np + N))"
	i=$((i + 1))
done
kill -0 "$DPID" || fail "daemon died"
log "PASS"
