#!/bin/sh
# (i) Bad input gets a clear error and the right exit status, and the daemon keeps serving the
# others: malformed / unknown session ids, a context over --max-context, sessions over
# --memory-limit, bad command lines, an unreachable daemon.
. "$(dirname "$0")/lib.sh"
it_init
need_stories
MAXCTX=256
start_daemon bad --model "$STORIES" --threads 1 --max-context $MAXCTX --memory-limit 2M

P="Once upon a time"
ref "$STORIES" 32 "$P" >"$T/ref"
H session new good >/dev/null || fail "session new"

expect() { # STATUS PATTERN WHAT -- command...
	want=$1 pat=$2 what=$3
	shift 4
	"$@" >"$T/out" 2>"$T/err" </dev/null
	got=$?
	[ $got = "$want" ] || fail "$what: exit $got, expected $want ($(cat "$T/err"))"
	grep -qi -- "$pat" "$T/err" || fail "$what: message '$(cat "$T/err")' does not match '$pat'"
	log "ok: $what: $(head -n 1 "$T/err")"
}

expect 1 "no such session\|no session" "unknown name" -- H --session nosuchname -n 4
expect 1 "no such session\|no session" "unknown id" -- H --session 0123456789abcdef -n 4
expect 1 "no such session\|no session" "malformed id" -- H --session 'zz!!zz' -n 4
expect 1 "too long" "over-long id" -- H --session "$(printf '%080d' 0)" -n 4
expect 1 "no such session\|no session" "show unknown" -- H session show 0123456789abcdef
expect 1 "no such session\|no session" "rm unknown" -- H session rm 0123456789abcdef
expect 1 "no such session\|no session" "fork unknown" -- H session fork nosuchname
expect 2 "" "empty id" -- H session show ""
expect 2 "unknown session command" "bad subcommand" -- H session frob
expect 2 "expects a number" "bad --temp" -- H --temp abc -p x
expect 2 "" "missing argument" -- H session snapshot good
expect 3 "hydd --foreground" "no daemon" -- "$HYD" --socket "$T/nothere.sock" status

# a prompt longer than the context the daemon allows
long=$(yes "the cat sat on the mat and" | head -n 80 | tr '\n' ' ')
expect 1 "" "prompt over --max-context" -- H --session good -n 4 -p "$long"
# a session larger than --max-context
expect 1 "" "session new --ctx over the limit" -- H session new --ctx 100000
# names and paths come back in messages and go to the log: no control character gets through
# (a newline in the log would start an entry of the client's choosing)
expect 1 "without control characters" "a name with a newline" -- H session new "$(printf 'evil\n<2>hydd: forged')"
expect 1 "without control characters" "a name that is not UTF-8" -- H session new "$(printf 'a\377b')"
expect 1 "a?b" "a path with a newline, quoted harmlessly" -- H session restore "$(printf '/nonexistent/a\nb')"
grep -q "^<2>hydd: forged" "$T/bad.log" && fail "a client forged a log entry"
# generating past the context stops at the end of it (not an error)
H session new edge >/dev/null || fail "session new"
H --session edge -n 1000 --temp 0 -p "$P" >"$T/edge" 2>"$T/edge.err" || fail "generation to the end of the context: $(cat "$T/edge.err")"
[ "$(session_tokens edge)" -le $MAXCTX ] || fail "the session grew past --max-context"

# fill the memory limit with sessions: one must be refused with a clear error
i=0
refused=""
while [ $i -lt 64 ]; do
	if ! H session new "m$i" >/dev/null 2>"$T/mem.err" ||
	   ! H --session "m$i" -n 200 --temp 0 -p "$P" >/dev/null 2>>"$T/mem.err"; then
		refused=$i
		break
	fi
	i=$((i + 1))
done
[ -n "$refused" ] || fail "64 sessions of $MAXCTX tokens fit in a 2 MiB memory limit"
grep -qiE "memory|limit|space" "$T/mem.err" || fail "memory limit message unclear: $(cat "$T/mem.err")"
log "ok: memory limit after $refused sessions: $(head -n 1 "$T/mem.err")"

# the daemon is alive and serves correctly, before and after freeing memory
kill -0 "$DPID" 2>/dev/null || fail "the daemon died"
H status >/dev/null || fail "status"
H session rm m0 || fail "rm"
H --session good -n 32 --temp 0 -p "$P" >"$T/good" || fail "completion after the errors"
same_file "$T/ref" "$T/good" "completion after the errors"
log "PASS"
