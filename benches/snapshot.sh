#!/usr/bin/env bash
# benches/snapshot.sh: how long `isotrace snapshot` pauses its target, by
# resident size and method (--method uffd: copy-before-write; --method
# fork: a copy-on-write child), next to gdb's `gcore` of the same process
# (issue #7). The methods take turns on the same target in every round.
#
# The target is tests/guests/snap_rss.c: it allocates and touches N MiB
# and a thread stamps CLOCK_MONOTONIC every 100 us, keeping the largest gap
# between two stamps. That gap, read from inside the target, is the pause
# it really saw (the issue's measure); isotrace's own figure (snapshot.json:
# first PTRACE_SEIZE to last PTRACE_DETACH of the pause, and in it the
# copy's set-up: write-protection or fork(2)) is shown next to it, as is
# the idle gap (the same stamper with nothing attached, over as long a
# window as the longest snapshot of the round: scheduling noise on this
# machine). uffd also holds the target once before the pause, to
# make its userfaultfd: the "target saw" column is the largest of all gaps.
#
# With --fault the stamper also maps, touches and unmaps 64 KiB and
# touches one never-touched page at every stamp: it then also waits
# whenever the target's mmap lock is held (write-protection, the final
# un-registration) or a new page's fault is slow (a fault thread's round
# trip), which a thread that only reads the clock does not see.
#
# Prints the median of each figure over the rounds. Never asserts speed;
# exits 1 only if a snapshot or gcore fails or the target dies.
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'EOF'
usage: benches/snapshot.sh [--rounds N] [--sizes "64 1024 4096"] [--methods "uffd fork"] [--fault] [--no-gcore] [--no-build]

  --rounds N      rounds per size (default 3)
  --sizes LIST    resident sizes in MiB (default "64 1024 4096")
  --methods LIST  snapshot methods, in turn on each target (default "uffd fork");
                  METHOD@BINARY takes that one with another isotrace build
                  (e.g. "uffd uffd@/tmp/old/isotrace": before/after, side by side)
  --fault         the stamper also mmaps/munmaps and touches new pages
  --no-gcore      leave out gdb's gcore (slow at large sizes)
  --quick         one round of 16 and 64 MiB (a smoke test of this script)
  --no-build      do not run `cargo build --release` first

environment:
  ISOTRACE   the binary to measure (default: target/release/isotrace)
  BENCH_DIR  where images and cores are written (default: a new dir in /tmp)
EOF
}

ROUNDS=3
ALT=0
SIZES="64 1024 4096"
METHODS="uffd fork"
GCORE=1
BUILD=1
FAULT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS="$2"; shift 2 ;;
	--sizes) SIZES="$2"; shift 2 ;;
	--methods) METHODS="$2"; shift 2 ;;
	--fault) FAULT=fault; shift ;;
	--no-gcore) GCORE=0; shift ;;
	--quick) ROUNDS=1; SIZES="16 64"; shift ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ISOTRACE="${ISOTRACE:-$ROOT/target/release/isotrace}"
if [ "$BUILD" = 1 ]; then
	(cd "$ROOT" && cargo build -q --release -p isotrace)
fi
[ -x "$ISOTRACE" ] || { echo "no isotrace at $ISOTRACE" >&2; exit 1; }
HAVE_GCORE=0
[ "$GCORE" = 1 ] && command -v gcore >/dev/null && HAVE_GCORE=1

WORK="${BENCH_DIR:-$(mktemp -d /tmp/isotrace-snapshot-bench.XXXXXX)}"
mkdir -p "$WORK"
GUEST="$WORK/snap_rss"
gcc -O2 -pthread -Wall -D_GNU_SOURCE -o "$GUEST" "$ROOT/tests/guests/snap_rss.c"

TARGET_PID=""
cleanup() {
	[ -n "$TARGET_PID" ] && kill -9 "$TARGET_PID" 2>/dev/null || true
	[ -z "${BENCH_DIR:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT

# wait_gone FILE: the guest consumes its command files within 2 ms.
wait_gone() {
	local i
	for i in $(seq 5000); do [ -e "$1" ] || return 0; sleep 0.002; done
	echo "the target stopped answering ($1)" >&2
	exit 1
}

# gap DIR: the largest stamp gap since the last reset, in us.
gap() {
	rm -f "$1/gap"
	touch "$1/report"
	wait_gone "$1/report"
	local i
	for i in $(seq 5000); do [ -s "$1/gap" ] && break; sleep 0.002; done
	cat "$1/gap"
}

reset() {
	touch "$1/reset"
	wait_gone "$1/reset"
	sleep 0.05
}

now_us() { echo $(( $(date +%s%N) / 1000 )); }

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }

# snap DIR METHOD[@BINARY]: one snapshot; prints "pause setup seen total" (us).
snap() {
	local dir=$1 method=${2%%@*} bin=$ISOTRACE t0 t1 pause setup seen
	[ "$2" != "$method" ] && bin=${2#*@}
	reset "$dir"
	t0=$(now_us)
	"$bin" snapshot "$TARGET_PID" -o "$dir/img" --method "$method" 2>"$dir/snapshot.err" ||
		{ cat "$dir/snapshot.err" >&2; exit 1; }
	t1=$(now_us)
	seen=$(gap "$dir")
	read -r pause setup < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
p = r["phases_us"]
print(r["pause_us"], p["fork"] - p["capture"])' "$dir/img/snapshot.json")
	rm -rf "$dir/img"
	echo "$pause $setup $seen $((t1 - t0))"
}

# One round at SIZE MiB: appends "idle {pause setup seen total} per method
# gcore_seen gcore_total" (us). The idle gap is taken over as long a
# window as the longest snapshot of the round: on a loaded machine the
# largest scheduling gap grows with the window.
round() {
	local size=$1 dir="$WORK/t$size" t0 t1 idle gseen gtotal row m one longest=0
	rm -rf "$dir"; mkdir -p "$dir"
	"$GUEST" "$dir" "$size" $FAULT &
	TARGET_PID=$!
	for _ in $(seq 30000); do [ -s "$dir/pid" ] && break; sleep 0.002; done
	[ -s "$dir/pid" ] || { echo "snap_rss $size MiB did not start" >&2; exit 1; }
	row=""
	for m in $METHODS; do
		one=$(snap "$dir" "$m")
		row="$row $one"
		one=${one##* }
		[ "$one" -gt "$longest" ] && longest=$one
	done
	reset "$dir"
	sleep "$(awk -v u="$longest" 'BEGIN { printf "%.3f", u / 1e6 }')"
	idle=$(gap "$dir")
	row="$idle$row"

	gseen=-; gtotal=-
	if [ "$HAVE_GCORE" = 1 ]; then
		reset "$dir"
		t0=$(now_us)
		gcore -o "$dir/core" "$TARGET_PID" >/dev/null 2>&1 || { echo "gcore failed" >&2; exit 1; }
		t1=$(now_us); gtotal=$((t1 - t0))
		gseen=$(gap "$dir")
		rm -f "$dir/core".*
	fi
	touch "$dir/exit"
	wait "$TARGET_PID" || { echo "snap_rss $size MiB failed after the snapshots" >&2; exit 1; }
	TARGET_PID=""
	echo "$row $gseen $gtotal" >>"$WORK/rows-$size"
}

ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.1f", u / 1000 }'; }

echo "isotrace snapshot by method, and gcore: median of $ROUNDS round(s); times in ms${FAULT:+; the stamper faults}"
echo "machine: $(nproc) CPU(s), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $METHODS; do
	case "$m" in *@*) echo "${m%%@*}@alt$((++ALT)) = ${m#*@}" ;; esac
done
echo
printf '| %8s | %6s | %9s | %14s | %12s | %12s | %14s |\n' \
	"RSS MiB" method "idle gap" "isotrace pause" "of it set-up" "target saw" "snapshot total"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ---------- -------- ----------- ---------------- -------------- -------------- ----------------
for size in $SIZES; do
	rm -f "$WORK/rows-$size"
	for _ in $(seq "$ROUNDS"); do round "$size"; done
	col() { awk -v c="$1" '{ print $c }' "$WORK/rows-$size" | median; }
	c=2
	alt=0
	for m in $METHODS; do
		case "$m" in *@*) m="${m%%@*}@alt$((++alt))" ;; esac
		printf '| %8s | %6s | %9s | %14s | %12s | %12s | %14s |\n' "$size" "$m" \
			"$(ms "$(col 1)")" "$(ms "$(col $c)")" "$(ms "$(col $((c + 1)))")" \
			"$(ms "$(col $((c + 2)))")" "$(ms "$(col $((c + 3)))")"
		c=$((c + 4))
	done
	if [ "$HAVE_GCORE" = 1 ]; then
		printf '| %8s | %6s | %9s | %14s | %12s | %12s | %14s |\n' "$size" gcore \
			"$(ms "$(col 1)")" - - "$(ms "$(col $c)")" "$(ms "$(col $((c + 1)))")"
	fi
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
