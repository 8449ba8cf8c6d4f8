#!/bin/sh
# (a) A greedy completion through libhyd (examples/hyd-complete) and through `hyd` in a pipe is
# byte-identical to `hyd run` (in-process) for the same model, prompt and -n: stories260K and
# the bundled default model.  With HYD_IO_BACKEND=epoll (epoll.sh) the daemon must also say it
# runs the epoll loop.
. "$(dirname "$0")/lib.sh"
it_init
need_stories

PROMPT="Once upon a time"
N=64
COMPLETE="$BUILDDIR/examples/hyd-complete"
[ -x "$COMPLETE" ] || skip "no $COMPLETE"

check_model() { # NAME MODEL [hydd options]
	name=$1
	model=$2
	shift 2
	start_daemon "$name" "$@"
	if [ -n "${HYD_IO_BACKEND:-}" ]; then
		H status >"$T/status" || fail "hyd status"
		grep -q "event loop: *$HYD_IO_BACKEND" "$T/status" || fail "daemon does not run $HYD_IO_BACKEND: $(cat "$T/status")"
	fi
	ref "$model" $N "$PROMPT" >"$T/$name.ref"
	[ -s "$T/$name.ref" ] || fail "empty reference"

	# hyd in a pipe, the default session (new: this daemon is fresh); stdin's newline is removed
	echo "$PROMPT" | H -n $N --temp 0 >"$T/$name.pipe" || fail "hyd (pipe) failed"
	same_file "$T/$name.ref" "$T/$name.pipe" "$name: hyd pipe vs hyd run"

	# a named session and -p
	id=$(H session new "$name-s") || fail "session new"
	H --session "$id" -n $N --temp 0 -p "$PROMPT" >"$T/$name.p" || fail "hyd -p failed"
	same_file "$T/$name.ref" "$T/$name.p" "$name: hyd -p vs hyd run"

	# libhyd: the example program
	timeout "$TMO" "$COMPLETE" -S "$SOCK" -t 0 -n $N "$PROMPT" >"$T/$name.lib" || fail "hyd-complete failed"
	same_file "$T/$name.ref" "$T/$name.lib" "$name: hyd-complete vs hyd run"
	stop_daemon "$DPID"
}

check_model stories "$STORIES" --model "$STORIES" --threads 1
BUNDLED=$(ls "${HYD_SRCDIR:-$BUILDDIR/..}"/models/*.gguf 2>/dev/null | head -n 1)
[ -n "$BUNDLED" ] || fail "no bundled model"
check_model bundled "$BUNDLED"
log "PASS"
