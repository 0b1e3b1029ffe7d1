#!/usr/bin/env bash
# benches/snapshot.sh: how long `isotrace snapshot` pauses its target, by
# resident size, next to gdb's `gcore` of the same process (issue #7).
#
# The target is tests/guests/snap_rss.c: it allocates and touches N MiB
# and a thread stamps CLOCK_MONOTONIC every 100 us, keeping the largest gap
# between two stamps. That gap, read from inside the target, is the pause
# it really saw (the issue's measure); isotrace's own figure (snapshot.json:
# first PTRACE_SEIZE to last PTRACE_DETACH, and the fork(2) inside it) is
# shown next to it, as is the idle gap (the same stamper with nothing
# attached: scheduling noise on this machine).
#
# Prints the median of each figure over the rounds. Never asserts speed;
# exits 1 only if a snapshot or gcore fails or the target dies.
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'EOF'
usage: benches/snapshot.sh [--rounds N] [--sizes "16 128 512 1024"] [--no-build]

  --rounds N    rounds per size (default 3)
  --sizes LIST  resident sizes in MiB (default "16 128 512 1024")
  --quick       one round of 16 and 64 MiB (a smoke test of this script)
  --no-build    do not run `cargo build --release` first

environment:
  ISOTRACE   the binary to measure (default: target/release/isotrace)
  BENCH_DIR  where images and cores are written (default: a new dir in /tmp)
EOF
}

ROUNDS=3
SIZES="16 128 512 1024"
BUILD=1
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS="$2"; shift 2 ;;
	--sizes) SIZES="$2"; shift 2 ;;
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
command -v gcore >/dev/null && HAVE_GCORE=1

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

# One round at SIZE MiB: appends "idle pause fork seen total gcore_seen gcore_total" (us).
round() {
	local size=$1 dir="$WORK/t$size" t0 t1 pause fork seen total idle gseen gtotal
	rm -rf "$dir"; mkdir -p "$dir"
	"$GUEST" "$dir" "$size" &
	TARGET_PID=$!
	for _ in $(seq 30000); do [ -s "$dir/pid" ] && break; sleep 0.002; done
	[ -s "$dir/pid" ] || { echo "snap_rss $size MiB did not start" >&2; exit 1; }
	reset "$dir"; sleep 0.3; idle=$(gap "$dir")

	reset "$dir"
	t0=$(now_us)
	"$ISOTRACE" snapshot "$TARGET_PID" -o "$dir/img" 2>"$dir/snapshot.err" ||
		{ cat "$dir/snapshot.err" >&2; exit 1; }
	t1=$(now_us); total=$((t1 - t0))
	seen=$(gap "$dir")
	read -r pause fork < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["pause_us"], r["phases_us"]["fork"] - r["phases_us"]["capture"])' "$dir/img/snapshot.json")
	rm -rf "$dir/img"

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
	echo "$idle $pause $fork $seen $total $gseen $gtotal" >>"$WORK/rows-$size"
}

ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.1f", u / 1000 }'; }

echo "isotrace snapshot vs gcore: median of $ROUNDS round(s); times in ms"
echo "machine: $(nproc) CPU(s), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
printf '| %8s | %9s | %14s | %10s | %12s | %14s | %15s | %11s |\n' \
	"RSS MiB" "idle gap" "isotrace pause" "of it fork" "target saw" "snapshot total" "gcore target saw" "gcore total"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- ----------- ---------------- ------------ -------------- ---------------- ----------------- -------------
for size in $SIZES; do
	rm -f "$WORK/rows-$size"
	for _ in $(seq "$ROUNDS"); do round "$size"; done
	col() { awk -v c="$1" '{ print $c }' "$WORK/rows-$size" | median; }
	printf '| %8s | %9s | %14s | %10s | %12s | %14s | %15s | %11s |\n' "$size" \
		"$(ms "$(col 1)")" "$(ms "$(col 2)")" "$(ms "$(col 3)")" "$(ms "$(col 4)")" \
		"$(ms "$(col 5)")" "$(ms "$(col 6)")" "$(ms "$(col 7)")"
done
