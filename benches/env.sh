#!/usr/bin/env bash
# benches/env.sh: speed of the environment lifecycle (issue #4).
#
#  - `env export` and `env import` of an env whose private layer holds
#    copies of /usr/include (about 200 MiB of headers by default), in MB/s,
#    against plain `tar -c` / `tar -x` of the same tree in the same run;
#  - `env copy` against `cp -a` of the same layer, and whether the
#    filesystem offers reflinks (`cp --reflink=always`); without them the
#    copy hard-links each file and copies it on its first change
#    (idb/src/share.rs), so it costs a link(2) per file, not the bytes;
#  - `isotrace ps` latency with N idle groups running (default 100), and
#    the idle supervisors' RSS.
#
# Every tool is timed round by round, interleaved (isotrace, plain, ...),
# and the median with min-max is printed. Both sides are made durable the
# same way (isotrace syncs what it writes; the plain tools are followed by
# `sync -f` on the target), with the source in the page cache for both.
# The targets are shown for reading; the script never asserts speed. It
# exits 1 only when an operation fails.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and awk must use '.' as the decimal point

usage() {
	cat <<'EOF'
usage: benches/env.sh [--size MIB] [--rounds N] [--groups N] [--quick] [--no-build]

  --size MIB   private layer size to build from /usr/include copies (default 200)
  --rounds N   rounds per measurement (default 3; 1 with --quick)
  --groups N   idle groups for the `ps` measurement (default 100; 10 with --quick)
  --quick      tiny sizes, a smoke test of this script (CI); < 60 s
  --no-build   do not run `cargo build --release` first

environment:
  ISOTRACE     the binary to measure (default: target/release/isotrace)
  BENCH_DIR    where the store and archives go (default: a new dir in /var/tmp,
               on disk; the filesystem decides reflink availability)
EOF
}

SIZE=200
ROUNDS=""
NGROUPS=""
QUICK=0
BUILD=1
while (($#)); do
	case $1 in
	--size | --rounds | --groups)
		[[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "env.sh: $1 needs a positive number" >&2; exit 2; }
		case $1 in --size) SIZE=$2 ;; --rounds) ROUNDS=$2 ;; --groups) NGROUPS=$2 ;; esac
		shift 2
		;;
	--quick) QUICK=1; shift ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "env.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
if ((QUICK)); then
	SIZE=8
	ROUNDS=${ROUNDS:-1}
	NGROUPS=${NGROUPS:-10}
fi
ROUNDS=${ROUNDS:-3}
NGROUPS=${NGROUPS:-100}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISOTRACE=${ISOTRACE:-$ROOT/target/release/isotrace}
if ((BUILD)) && [[ $ISOTRACE == "$ROOT/target/release/isotrace" ]]; then
	(cd "$ROOT" && cargo build -q --release)
fi
[[ -x $ISOTRACE ]] || { echo "env.sh: no isotrace binary at $ISOTRACE" >&2; exit 1; }

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/isotrace-envbench.XXXXXX")
export ISOTRACE_HOME=$WORK/home XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
GROUP_PIDS=()
cleanup() {
	# Only the supervisors this script started, by pid.
	for p in "${GROUP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${GROUP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "env.sh: $*" >&2; exit 1; }
# Wall times, set by `timed` through printf -v.
te='' tp='' ti='' tx='' tc='' ta='' tps=''


# now: seconds since the epoch, microseconds.
now() { echo "$EPOCHREALTIME"; }
# timed VAR CMD...: run CMD (output discarded), store its wall time in VAR.
# Dirty data of earlier steps is written back first (untimed), so that
# neither tool pays for the other's writeback.
timed() {
	local var=$1 t0 t1
	shift
	sync
	t0=$(now)
	"$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; fail "failed: $*"; }
	t1=$(now)
	printf -v "$var" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')"
}
# stats [DECIMALS]: median, min and max of the numbers on stdin, as
# "MED (MIN-MAX)", with DECIMALS places (default 3).
stats() {
	sort -g | awk -v d="${1:-3}" '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		f = "%." d "f"
		printf f " (" f "-" f ")", m, v[1], v[NR] }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }

# --- the env ---------------------------------------------------------------
"$ISOTRACE" env create src
UPPER=$ISOTRACE_HOME/envs/src/upper
SRC_TREE=/usr/include
((QUICK)) && SRC_TREE=/usr/include/linux
[[ -d $SRC_TREE ]] || fail "$SRC_TREE is missing (install libc6-dev / linux-libc-dev)"
n=0
while (($(du -s --apparent-size -B1 "$UPPER" | cut -f1) < SIZE * 1024 * 1024)); do
	mkdir -p "$UPPER/usr"
	cp -a "$SRC_TREE" "$UPPER/usr/include.$n"
	n=$((n + 1))
done
BYTES=$(du -s --apparent-size -B1 "$UPPER" | cut -f1)
FILES=$(find "$UPPER" | wc -l)
sync -f "$UPPER"
echo "env src: $((BYTES / 1048576)) MiB, $FILES entries ($n copies of $SRC_TREE); store on $(df --output=fstype "$WORK" | tail -1)"

# --- export / import -------------------------------------------------------
: >"$WORK/t"
# Odd rounds run the plain tool first: no tool always goes first.
for ((r = 0; r < ROUNDS; r++)); do
	rm -f "$WORK/iso.tar" "$WORK/plain.tar"
	rm -rf "$WORK/plain-x" && mkdir "$WORK/plain-x"
	iso_export() { timed te "$ISOTRACE" env export src -o "$WORK/iso.tar"; }
	tar_c() { timed tp bash -c "tar -cf '$WORK/plain.tar' -C '$UPPER' . && sync -f '$WORK/plain.tar'"; }
	iso_import() { timed ti "$ISOTRACE" env import "$WORK/iso.tar" --name "imp$r"; }
	tar_x() { timed tx bash -c "tar -xf '$WORK/plain.tar' -C '$WORK/plain-x' && sync -f '$WORK/plain-x'"; }
	if ((r % 2)); then tar_c; iso_export; tar_x; iso_import; else iso_export; tar_c; iso_import; tar_x; fi
	"$ISOTRACE" env rm "imp$r"
	echo "$te $tp $ti $tx" >>"$WORK/t"
done
col() { awk -v c="$1" '{ print $c }' "$WORK/t"; }
EXP=$(col 1 | median) TAR_C=$(col 2 | median) IMP=$(col 3 | median) TAR_X=$(col 4 | median)
echo
echo "| operation | isotrace s | plain tar s | isotrace MB/s | ratio | target |"
echo "|---|---|---|---|---|---|"
echo "| env export | $(col 1 | stats) | $(col 2 | stats) | $(mbps "$BYTES" "$EXP") | $(awk -v a="$EXP" -v b="$TAR_C" 'BEGIN { printf "%.2fx", a / b }') | ≥ 300 MB/s or ≤ 1.5x tar |"
echo "| env import | $(col 3 | stats) | $(col 4 | stats) | $(mbps "$BYTES" "$IMP") | $(awk -v a="$IMP" -v b="$TAR_X" 'BEGIN { printf "%.2fx", a / b }') | ≥ 300 MB/s or ≤ 1.5x tar |"

# --- copy ------------------------------------------------------------------
echo x >"$WORK/reflink-probe"
if cp --reflink=always "$WORK/reflink-probe" "$WORK/reflink-probe2" 2>/dev/null; then
	REFLINK="available"
else
	REFLINK="not available on $(df --output=fstype "$WORK" | tail -1): hard links"
fi
: >"$WORK/t"
for ((r = 0; r < ROUNDS; r++)); do
	rm -rf "$WORK/plain-cp"
	iso_copy() { timed tc "$ISOTRACE" env copy src "cp$r"; }
	cp_a() { timed ta bash -c "cp -a '$UPPER' '$WORK/plain-cp' && sync -f '$WORK/plain-cp'"; }
	if ((r % 2)); then cp_a; iso_copy; else iso_copy; cp_a; fi
	"$ISOTRACE" env rm "cp$r"
	echo "$tc $ta" >>"$WORK/t"
done
CP=$(col 1 | median) CPA=$(col 2 | median)
echo "| env copy | $(col 1 | stats) | cp -a: $(col 2 | stats) | $(mbps "$BYTES" "$CP") | $(awk -v a="$CP" -v b="$CPA" 'BEGIN { printf "%.2fx", a / b }') | ≤ 0.5x cp -a where reflinks or hard links apply (reflink: $REFLINK) |"

# --- ps with idle groups ---------------------------------------------------
for ((g = 0; g < NGROUPS; g++)); do
	"$ISOTRACE" --no-isolation --group "idle$g" -- sleep 100000 </dev/null >/dev/null 2>&1 &
	GROUP_PIDS+=($!)
done
deadline=$((SECONDS + 120))
until (($("$ISOTRACE" ps --json | grep -c '"group"' || true) >= NGROUPS)); do
	((SECONDS < deadline)) || fail "only $("$ISOTRACE" ps | tail -n +2 | wc -l) of $NGROUPS groups came up"
	sleep 0.2
done
: >"$WORK/t"
for ((r = 0; r < 5 * ROUNDS; r++)); do
	timed tps "$ISOTRACE" ps
	echo "$tps" >>"$WORK/t"
done
PS=$(col 1 | stats)
RSS=$(for p in "${GROUP_PIDS[@]}"; do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | stats 0)
echo "| ps, $NGROUPS idle groups | $PS s | | | | < 0.100 s |"
echo "| idle supervisor RSS | $RSS KiB | | | | ≤ 8192 KiB |"
