#!/bin/sh
# (e) Generate, fork the session twice, then continue every branch: the branch that gets new
# text first must equal the same operations on a session that was never forked, and the
# original and the other fork, continued afterwards without new text, must both equal the
# uninterrupted `hyd run` (so the first branch's writes did not leak into them).
. "$(dirname "$0")/lib.sh"
it_init
need_stories
start_daemon fork --model "$STORIES" --threads 1

P="Once upon a time"
X="Then the dog said"
N1=40
N2=60
ref "$STORIES" $N1 "$P" >"$T/ref1"
ref "$STORIES" $((N1 + N2)) "$P" >"$T/ref_a"

id=$(H session new trunk) || fail "session new"
H --session trunk -n $N1 --temp 0 -p "$P" >"$T/first" || fail "first part"
same_file "$T/ref1" "$T/first" "first part"
fk=$(H session fork trunk branch) || fail "fork"
fk2=$(H session fork "$id") || fail "fork by id"
[ "$fk" != "$id" ] && [ "$fk2" != "$fk" ] && [ "$fk2" != "$id" ] || fail "fork returned an existing id"
[ "$(session_tokens "$fk")" = "$(session_tokens "$id")" ] || fail "the fork has another token count"

# branch B: new text, then generate; compared with a session that was never forked
H --session branch -n $N2 --temp 0 -p "$X" >"$T/b" || fail "continue the fork"
H session new straight >/dev/null || fail "session new"
H --session straight -n $N1 --temp 0 -p "$P" >/dev/null || fail "straight part 1"
H --session straight -n $N2 --temp 0 -p "$X" >"$T/ref_b" || fail "straight part 2"
same_file "$T/ref_b" "$T/b" "forked branch with new text"

# the original and the second fork continue without new text
H --session trunk -n $N2 --temp 0 </dev/null >"$T/a" || fail "continue the original"
H --session "$fk2" -n $N2 --temp 0 </dev/null >"$T/c" || fail "continue the second fork"
{ head -c -1 "$T/first"; cat "$T/a"; } >"$T/total_a"
{ head -c -1 "$T/first"; cat "$T/c"; } >"$T/total_c"
same_file "$T/ref_a" "$T/total_a" "original branch"
same_file "$T/ref_a" "$T/total_c" "second fork"
log "PASS"
