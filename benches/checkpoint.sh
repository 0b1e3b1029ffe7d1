#!/usr/bin/env bash
# benches/checkpoint.sh: checkpoint and restore speed (issue #5), against a
# plain sequential write of the same size to the same directory, measured
# in the same run (first-touch memory and the disk are noisy here).
#
# For each memory size: a group (`isotrace run --no-isolation`) holding that
# much touched anonymous memory is checkpointed (checkpoint-terminate) into
# the work directory, the supervisor's peak RSS is read, and the image is
# restored (`isotrace restore IMAGE --detach`: under a supervisor, same
# pids). Then the freeze alone (`--leave-running`) of a 64-thread process
# and of a 100-process group. Prints a markdown table; asserts no speed.
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'USAGE'
usage: benches/checkpoint.sh [--sizes "64 256 1024"] [--rounds N] [--dir DIR] [--quick] [--no-build]

  --sizes LIST  memory sizes in MiB (default "64 256 1024"; add 4096 for the issue's top size)
  --rounds N    rounds per size (default 3; 1 with --quick)
  --dir DIR     where images and the plain write go (default: a directory under /var/tmp)
  --quick       one round of 16 MiB, 4 threads, 4 processes (a smoke test)
  --no-build    do not run `cargo build --release` first

environment: ISOTRACE (default target/release/isotrace)
USAGE
}

SIZES="64 256 1024" ROUNDS="" DIR="" QUICK=0 BUILD=1 THREADS=64 PROCS=100
while (($#)); do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "checkpoint.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
if ((QUICK)); then
	SIZES=16 ROUNDS=1 THREADS=4 PROCS=4
fi
ROUNDS=${ROUNDS:-3}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISOTRACE=${ISOTRACE:-$ROOT/target/release/isotrace}
if ((BUILD)); then
	(cd "$ROOT" && cargo build --release --quiet)
fi
WORK=$(mktemp -d "${DIR:-/var/tmp}/isotrace-ckpt.XXXXXX")
export ISOTRACE_HOME=$WORK/home XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$ISOTRACE_HOME" "$XDG_RUNTIME_DIR"
SUPS=()
cleanup() {
	for p in "${SUPS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
gcc -O2 -Wall -pthread -o "$WORK/hold" "$ROOT/benches/guests/ckpt_hold.c"

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
json_field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -n1 | awk '{ printf "%.1f", $1 }'; }

# start GROUP MODE N: a held group; prints its supervisor's pid.
start() {
	rm -f "$WORK/ready"
	"$ISOTRACE" run --no-isolation --stats --group "$1" -- "$WORK/hold" "$WORK/ready" "$2" "$3" \
		</dev/null >/dev/null 2>"$WORK/$1.err" &
	local sup=$!
	SUPS+=("$sup")
	for _ in $(seq 600); do
		[[ -s $WORK/ready && -S $XDG_RUNTIME_DIR/isotrace/$1.sock ]] && break
		sleep 0.1
	done
	[[ -s $WORK/ready ]] || { echo "checkpoint.sh: the $2 $3 group never got ready" >&2; exit 1; }
	echo "$sup"
}

echo "| size | plain write (ms) | checkpoint (ms) | of it frozen (ms) | checkpoint / plain | MB/s | restore (ms) | supervisor peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
	plain=() ckpt=() frozen=() rest=() rss=()
	for _ in $(seq "$ROUNDS"); do
		t0=$(now)
		dd if=/dev/zero of="$WORK/plain" bs=1M count="$size" conv=fsync status=none
		t1=$(now)
		plain+=("$(ms "$t0" "$t1")")
		rm -f "$WORK/plain"
		sup=$(start "m$size" mem "$size")
		rm -rf "$WORK/img"
		t0=$(now)
		out=$("$ISOTRACE" checkpoint "m$size" -o "$WORK/img" --json)
		t1=$(now)
		ckpt+=("$(ms "$t0" "$t1")")
		frozen+=("$(json_field frozen_ms <<<"$out")")
		# The supervisor did the dump: its peak RSS (--stats, printed as it
		# exits; it is not this shell's child, so poll) is what the dump
		# cost it.
		for _ in $(seq 300); do
			grep -q 'peak_rss_kib=' "$WORK/m$size.err" 2>/dev/null && break
			sleep 0.1
		done
		rss+=("$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' "$WORK/m$size.err" | tail -n1)")
		t0=$(now)
		line=$("$ISOTRACE" restore "$WORK/img" --detach 2>&1 | tail -n1)
		t1=$(now)
		rest+=("$(ms "$t0" "$t1")")
		rsup=$(sed -n 's/.*supervisor pid \([0-9]*\).*/\1/p' <<<"$line")
		if [[ -n $rsup ]]; then kill -9 "$rsup" 2>/dev/null || true; fi
		sleep 0.2
	done
	p=$(echo "${plain[*]}" | median) c=$(echo "${ckpt[*]}" | median)
	f=$(echo "${frozen[*]}" | median) r=$(echo "${rest[*]}" | median)
	m=$(echo "${rss[*]}" | median)
	ratio=$(awk -v c="$c" -v p="$p" 'BEGIN { printf "%.2fx", c / p }')
	mbs=$(awk -v s="$size" -v c="$c" 'BEGIN { printf "%.0f", s * 1.048576 / (c / 1000) }')
	rssm=$(awk -v k="${m:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "n/a" }')
	echo "| $size MiB | $p | $c | $f | $ratio | $mbs | $r | $rssm |"
done

echo
echo "| freeze (--leave-running) | freeze (ms) | frozen in all (ms) |"
echo "|---|---|---|"
for what in threads procs; do
	n=$THREADS
	[[ $what == procs ]] && n=$PROCS
	set -- "$what" "$n"
	sup=$(start "f$1" "$1" "$2")
	fr=() fa=()
	for _ in $(seq "$ROUNDS"); do
		rm -rf "$WORK/img"
		out=$("$ISOTRACE" checkpoint "f$1" -o "$WORK/img" --leave-running --json)
		fr+=("$(json_field freeze_ms <<<"$out")")
		fa+=("$(json_field frozen_ms <<<"$out")")
	done
	kill -9 "$sup" 2>/dev/null || true
	echo "| $2 $1 | $(echo "${fr[*]}" | median) | $(echo "${fa[*]}" | median) |"
done
