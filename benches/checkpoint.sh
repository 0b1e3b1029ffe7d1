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
#
# With --base BIN, BIN (say, a build of the previous commit) is measured
# too, interleaved with ISOTRACE round by round (the order alternating),
# each with its own ratio to the plain write of the same rounds: on this
# loaded 2-vCPU machine only figures taken side by side compare.
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'USAGE'
usage: benches/checkpoint.sh [--sizes "64 256 1024"] [--rounds N] [--dir DIR] [--base BIN] [--no-freeze] [--quick] [--no-build]

  --sizes LIST  memory sizes in MiB (default "64 256 1024"; add 4096 for the issue's top size)
  --rounds N    rounds per size (default 3; 1 with --quick)
  --dir DIR     where images and the plain write go (default: a directory under /var/tmp)
  --base BIN    also measure the isotrace binary BIN, interleaved round by round
  --no-freeze   skip the freeze table (64 threads, 100 processes)
  --quick       one round of 16 MiB, 4 threads, 4 processes (a smoke test)
  --no-build    do not run `cargo build --release` first

environment: ISOTRACE (default target/release/isotrace)
USAGE
}

SIZES="64 256 1024" ROUNDS="" DIR="" QUICK=0 BUILD=1 THREADS=64 PROCS=100 BASE="" FREEZE=1
while (($#)); do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--base) BASE=$2; shift 2 ;;
	--no-freeze) FREEZE=0; shift ;;
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
SUPS=() HOLD_DIR=""
cleanup() {
	for p in "${SUPS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$WORK" "$HOLD_DIR"
}
trap cleanup EXIT
# The guest is built outside WORK: with --dir under /dev (a tmpfs such as
# /dev/shm, to take the disk out), a restore would take its text mapping
# for a device's and refuse it.
HOLD_DIR=$(mktemp -d /var/tmp/isotrace-hold.XXXXXX)
gcc -O2 -Wall -pthread -o "$HOLD_DIR/hold" "$ROOT/benches/guests/ckpt_hold.c"

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
json_field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -n1 | awk '{ printf "%.1f", $1 }'; }

# start GROUP MODE N [BIN]: a held group; prints its supervisor's pid.
start() {
	rm -f "$WORK/ready"
	"${4:-$ISOTRACE}" run --no-isolation --stats --group "$1" -- "$HOLD_DIR/hold" "$WORK/ready" "$2" "$3" \
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

# one BIN LABEL SIZE PLAIN_MS: one checkpoint and restore of a SIZE MiB
# group with BIN; appends "label ckpt frozen ratio restore rss" to $WORK/rows.
one() {
	local bin=$1 label=$2 size=$3 plain=$4 sup out t0 t1 c f r rss line rsup
	sup=$(start "m$size$label" mem "$size" "$bin")
	rm -rf "$WORK/img"
	t0=$(now)
	out=$("$bin" checkpoint "m$size$label" -o "$WORK/img" --json)
	t1=$(now)
	c=$(ms "$t0" "$t1")
	f=$(json_field frozen_ms <<<"$out")
	# The supervisor did the dump: its peak RSS (--stats, printed as it
	# exits; it is not this shell's child, so poll) is what the dump
	# cost it.
	for _ in $(seq 300); do
		grep -q 'peak_rss_kib=' "$WORK/m$size$label.err" 2>/dev/null && break
		sleep 0.1
	done
	rss=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' "$WORK/m$size$label.err" | tail -n1)
	t0=$(now)
	line=$("$bin" restore "$WORK/img" --detach 2>&1 | tail -n1) || true
	t1=$(now)
	r=$(ms "$t0" "$t1")
	rsup=$(sed -n 's/.*supervisor pid \([0-9]*\).*/\1/p' <<<"$line")
	if [[ -n $rsup ]]; then kill -9 "$rsup" 2>/dev/null || true; fi
	[[ -n $rsup ]] || echo "checkpoint.sh: $label restore: $line" >&2
	echo "$label $c $f $(awk -v c="$c" -v p="$plain" 'BEGIN { printf "%.3f", c / p }') $r ${rss:-0}" >>"$WORK/rows"
	sleep 0.2
}

# col LABEL N: the median (min-max) of column N of LABEL's rows.
col() {
	awk -v l="$1" -v n="$2" '$1 == l { print $n }' "$WORK/rows" | sort -g |
		awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

LABELS=new
[[ -n $BASE ]] && LABELS="base new"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| size | binary | plain write (ms) | checkpoint (ms) | of it frozen (ms) | checkpoint / plain (per round) | MB/s | restore (ms) | supervisor peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
	plain=()
	: >"$WORK/rows"
	for round in $(seq "$ROUNDS"); do
		t0=$(now)
		dd if=/dev/zero of="$WORK/plain" bs=1M count="$size" conv=fsync status=none
		t1=$(now)
		p=$(ms "$t0" "$t1")
		plain+=("$p")
		rm -f "$WORK/plain"
		order=$LABELS
		((round % 2 == 0)) && order=$(tr ' ' '\n' <<<"$LABELS" | tac | tr '\n' ' ')
		for label in $order; do
			bin=$ISOTRACE
			[[ $label == base ]] && bin=$BASE
			one "$bin" "$label" "$size" "$p"
		done
	done
	p=$(echo "${plain[*]}" | median)
	pr=$(tr ' ' '\n' <<<"${plain[*]}" | sort -g | awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }')
	for label in $LABELS; do
		c=$(awk -v l="$label" '$1 == l { print $2 }' "$WORK/rows" | median)
		m=$(awk -v l="$label" '$1 == l { print $6 }' "$WORK/rows" | median)
		mbs=$(awk -v s="$size" -v c="$c" 'BEGIN { printf "%.0f", s * 1.048576 / (c / 1000) }')
		rssm=$(awk -v k="${m:-0}" 'BEGIN { if (k > 0) printf "%.1f", k / 1024; else print "n/a" }')
		echo "| $size MiB | $label | $pr | $(col "$label" 2) | $(col "$label" 3) | $(col "$label" 4)x | $mbs | $(col "$label" 5) | $rssm |"
	done
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

((FREEZE)) || exit 0
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
