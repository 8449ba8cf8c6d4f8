#!/bin/sh
# (f) Generate, snapshot the session to a file, delete it, restore the file as a new session and
# continue: the output equals an uninterrupted run.  A restart of the daemon in between shows the
# snapshot does not depend on the daemon's memory.
. "$(dirname "$0")/lib.sh"
it_init
need_stories
start_daemon snap --model "$STORIES" --threads 1

P="Once upon a time"
N1=50
N2=50
id=$(H session new orig) || fail "session new"
H --session "$id" -n $N1 --temp 0 -p "$P" >"$T/first" || fail "first part"
nt=$(session_tokens "$id")
mkdir -p "$T/snaps"
(cd "$T/snaps" && H session snapshot "$id" s1.snap) || fail "snapshot (relative path)"
[ -s "$T/snaps/s1.snap" ] || fail "no snapshot file"
H session rm "$id" || fail "rm"
H session show "$id" >/dev/null 2>&1 && fail "the session still exists after rm"
stop_daemon "$DPID"
start_daemon snap --model "$STORIES" --threads 1
rid=$(H session restore "$T/snaps/s1.snap" restored) || fail "restore"
[ "$(session_tokens restored)" = "$nt" ] || fail "restored session has $(session_tokens restored) tokens, not $nt"
H --session "$rid" -n $N2 --temp 0 </dev/null >"$T/cont" || fail "continue"
ref "$STORIES" $((N1 + N2)) "$P" >"$T/ref"
{ head -c -1 "$T/first"; cat "$T/cont"; } >"$T/total"
same_file "$T/ref" "$T/total" "snapshot, delete, restore, continue"

# a second restore of the same file is an independent session
rid2=$(H session restore "$T/snaps/s1.snap") || fail "second restore"
[ "$rid2" != "$rid" ] || fail "restore reused an id"
H --session "$rid2" -n $N2 --temp 0 </dev/null >"$T/cont2" || fail "continue 2"
same_file "$T/cont" "$T/cont2" "second restore"
# that restore took the snapshot's own name ("orig"); a third one without a name finds it taken:
# a clear error, and the daemon goes on serving (it once printed the name from freed memory)
H session restore "$T/snaps/s1.snap" >/dev/null 2>"$T/taken.err" && fail "restoring under a taken name succeeded"
grep -q "'orig' is in use" "$T/taken.err" || fail "unclear error for a taken name: $(cat "$T/taken.err")"
H session show orig >/dev/null || fail "the session named orig is gone"
H --session "$rid2" -n 5 --temp 0 </dev/null >/dev/null || fail "the daemon stopped serving after the refused restore"
# not a snapshot
echo garbage >"$T/bad.snap"
H session restore "$T/bad.snap" >/dev/null 2>"$T/bad.err" && fail "restoring garbage succeeded"
log "PASS"
