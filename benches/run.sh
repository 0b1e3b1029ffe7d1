#!/usr/bin/env bash
# benches/run.sh: isotrace's speed measurements (issue #2).
#
# Runs each workload natively, under `isotrace --no-isolation --` and under
# PRoot (`proot CMD`, host root), interleaved round by round (native,
# isotrace, proot, native, ...), and prints the median with min-max of each,
# and ratios vs native and vs PRoot. The targets are shown for reading; the
# script never asserts speed. It exits 1 only when a workload *fails*
# natively or under isotrace (a correctness problem), or isotrace cannot run.
#
# Why the method (see ../shared/PERF-NOTES.md): on a VM the slowest and the
# fastest round differ by 3-5x, so tools are interleaved and medians with
# ranges are reported; a ptrace stop's cost depends on where tracer and tracee
# run, so the micro loops are run pinned (`taskset -c CPU`, everything on one
# CPU, to compare designs) and unpinned (what users see); and file-creating
# workloads run on tmpfs, because the disk hides the supervisor's cost.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and awk must use '.' as the decimal point

usage() {
	cat <<'EOF'
usage: benches/run.sh [--rounds N] [--quick] [--only NAME[,NAME...]] [--no-build]

  --rounds N   rounds per workload (default 5; 1 with --quick)
  --quick      tiny sizes, for a smoke test of this script (CI); < 60 s
  --only LIST  run only these workloads: getppid stat openclose tar find gcc
               threads procs (comma-separated)
  --no-build   do not run `cargo build --release` first

environment:
  ISOTRACE     the binary to measure (default: target/release/isotrace)
  PROOT        the PRoot to compare with (default: proot on PATH)
  PIN_CPU      the CPU for pinned rows (default: 1, or 0 on a 1-CPU machine)
  BENCH_OUT    where the markdown results go (default: /tmp/isotrace-bench.md)
EOF
}

ROUNDS=""
QUICK=0
ONLY=""
BUILD=1
while (($#)); do
	case $1 in
	--rounds)
		[[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds needs a positive number" >&2; exit 2; }
		ROUNDS=$2
		shift 2
		;;
	--quick) QUICK=1; shift ;;
	--only)
		[[ -n ${2:-} ]] || { echo "run.sh: --only needs a workload name" >&2; exit 2; }
		ONLY=$2
		shift 2
		;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

ALL_WORKLOADS="getppid stat openclose tar find gcc threads procs"
for w in ${ONLY//,/ }; do
	[[ " $ALL_WORKLOADS " == *" $w "* ]] || { echo "run.sh: unknown workload '$w' (known: $ALL_WORKLOADS)" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISOTRACE=${ISOTRACE:-$ROOT/target/release/isotrace}
PROOT=${PROOT:-$(command -v proot || true)}
OUT=${BENCH_OUT:-/tmp/isotrace-bench.md}
if [[ -z ${PIN_CPU:-} ]]; then
	PIN_CPU=1
	(($(nproc) > 1)) || PIN_CPU=0
fi

# Sizes. Full: the sizes of issue #2 and PERF-NOTES.md. Quick: every code
# path once, small enough for CI.
if ((QUICK)); then
	ROUNDS=${ROUNDS:-1}
	RUN_TIMEOUT=60
	N_GETPPID=20000 N_STAT=2000 N_OPEN=2000
	TAR_SRC=/usr/include/linux FIND_DIR=/usr/include GCC_N=2
	THREADS="1 4 16" K_STAT=50 PROCS="1 10 50"
else
	ROUNDS=${ROUNDS:-5}
	RUN_TIMEOUT=900
	N_GETPPID=2000000 N_STAT=200000 N_OPEN=100000
	TAR_SRC=/usr/include FIND_DIR=/usr GCC_N=20
	THREADS="1 4 16 64 256" K_STAT=500 PROCS="1 10 100 500"
fi

want() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }
say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- set-up

if ((BUILD)) && command -v cargo >/dev/null; then
	say "== cargo build --release"
	if ! (cd "$ROOT" && cargo build --release --quiet) && [[ ! -x $ISOTRACE ]]; then
		say "run.sh: cargo build --release failed and $ISOTRACE does not exist"
		exit 1
	fi
fi

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /dev/shm/isotrace-bench.XXXXXX 2>/dev/null || mktemp -d)
DISK=$(mktemp -d /var/tmp/isotrace-bench.XXXXXX)
cleanup() { rm -rf "$WORK" "$DISK"; }
trap cleanup EXIT

say "== compiling guests into $WORK/bin"
mkdir -p "$WORK/bin" "$WORK/gcc"
for src in "$ROOT"/benches/guests/*.c; do
	name=$(basename "$src" .c)
	[[ $name == hello ]] && continue
	gcc -O2 -Wall -Wextra -pthread -o "$WORK/bin/$name" "$src"
done
cp "$ROOT/benches/guests/hello.c" "$WORK/gcc/hello.c"

# "env" is isotrace with isolation: `isotrace --env bench`, its store on the
# same tmpfs as the work directory (issue #3's side-by-side comparison).
TOOLS=(native isotrace env proot)
declare -A HAVE=([native]=1 [isotrace]=1 [env]=1 [proot]=1)
STATS_FLAG=()
FAILED=0

# The probe checks that the command really ran (its output and exit status
# come through), not merely that the binary exits 0.
probe_rc=0
probe_out=$(timeout -k 5 30 "$ISOTRACE" --no-isolation -- sh -c 'echo probe-ok; exit 3' </dev/null 2>"$WORK/probe.err") || probe_rc=$?
if [[ $probe_out == probe-ok && $probe_rc == 3 ]]; then
	ISO_VERSION=$(timeout -k 5 30 "$ISOTRACE" --version 2>/dev/null | head -n1 || true)
	# --stats prints `isotrace: stats: stops=N peak_rss_kib=M` on exit.
	# An isotrace without it rejects the flag (exit 125): stats are then n/a.
	if timeout -k 5 30 "$ISOTRACE" --no-isolation --stats -- /bin/true </dev/null 2>&1 >/dev/null | grep -q '^isotrace: stats:'; then
		STATS_FLAG=(--stats)
	fi
else
	say "run.sh: isotrace does not work: \`$ISOTRACE --no-isolation -- sh -c 'echo probe-ok; exit 3'\` gave exit $probe_rc, stdout '$probe_out', stderr:"
	head -n5 "$WORK/probe.err" >&2 || true
	HAVE[isotrace]=0
	HAVE[env]=0
	ISO_VERSION="not working"
	FAILED=1
fi

if [[ -n $PROOT && -x $PROOT ]]; then
	# `proot --version` starts with an ASCII-art banner; the version is on it.
	PROOT_VERSION=$(timeout -k 5 30 "$PROOT" --version 2>&1 | grep -m1 -oE '[0-9]+\.[0-9]+(\.[0-9]+)?[-.0-9a-z]*' || echo "unknown")
	PROOT_VERSION="proot $PROOT_VERSION ($PROOT)"
else
	HAVE[proot]=0
	PROOT_VERSION="proot: not installed"
fi

# ---------------------------------------------------------------- running

# Results: one line per measurement in $WORK/results.tsv:
#   ROW TOOL ROUND VALUE   (VALUE is FAIL when the run failed)
# Rows' metadata in $WORK/rows.tsv: ROW GROUP LABEL UNIT TARGET
# isotrace's --stats per run in $WORK/stats.tsv: ROW STOPS PEAK_RSS_KIB
: >"$WORK/results.tsv"
: >"$WORK/rows.tsv"
: >"$WORK/stats.tsv"

# run_tool TOOL PIN STDOUT CMD...: runs CMD under TOOL, pinned to $PIN_CPU if
# PIN is "pinned". Sets RC and ELAPSED (seconds, wall clock, measured here:
# it includes the tool's start-up, as a user would see it). A run that hangs
# is killed after $RUN_TIMEOUT s (exit 124 or 137) and counts as failed.
run_tool() {
	local tool=$1 pin=$2 stdout=$3
	shift 3
	local -a pre=(timeout -k 10 "$RUN_TIMEOUT")
	[[ $pin == pinned ]] && pre+=(taskset -c "$PIN_CPU")
	case $tool in
	native) ;;
	isotrace) pre+=("$ISOTRACE" --no-isolation "${STATS_FLAG[@]}" --) ;;
	env) pre+=(env "ISOTRACE_HOME=$WORK/isohome" "XDG_RUNTIME_DIR=$WORK" "$ISOTRACE" --env bench --) ;;
	proot) pre+=("$PROOT") ;;
	esac
	local t0=$EPOCHREALTIME t1
	set +e
	"${pre[@]}" "$@" <"/dev/null" >"$stdout" 2>"$WORK/err"
	RC=$?
	set -e
	t1=$EPOCHREALTIME
	ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
}

# stat_field KEY: the value of KEY=VALUE on the last `isotrace: stats:` line
# of the run just made (the line has other keys, e.g. exit_stops=, too).
stat_field() {
	awk -v key="$1" '/^isotrace: stats:/ { for (i = 3; i <= NF; i++) if (index($i, key "=") == 1) v = substr($i, length(key) + 2) } END { print v }' "$WORK/err"
}

# record ROW TOOL ROUND KIND: stores the figure of the run just made. KIND is
# "guest" (the guest's own figure, first field of its stdout) or "wall".
record() {
	local row=$1 tool=$2 round=$3 kind=$4 value
	if ((RC == 0)); then
		if [[ $kind == guest ]]; then
			value=$(awk 'NF { v = $1 } END { print v }' "$WORK/out")
		else
			value=$ELAPSED
		fi
		[[ $value =~ ^[0-9.]+$ ]] || { RC=254; value=FAIL; }
	else
		value=FAIL
	fi
	if [[ $value == FAIL ]]; then
		say "   $row: $tool FAILED (exit $RC); its stderr:"
		grep -v '^isotrace: stats:' "$WORK/err" | tail -n5 | sed 's/^/     /' >&2 || true
		[[ $tool == proot ]] || FAILED=1
	fi
	printf '%s\t%s\t%s\t%s\n' "$row" "$tool" "$round" "$value" >>"$WORK/results.tsv"
	if [[ $tool == isotrace ]]; then
		local stops rss
		stops=$(stat_field stops)
		rss=$(stat_field peak_rss_kib)
		[[ -n $stops$rss ]] && printf '%s\t%s\t%s\n' "$row" "${stops:-?}" "${rss:-?}" >>"$WORK/stats.tsv"
	fi
	return 0
}

# bench ROW GROUP LABEL UNIT TARGET PIN KIND [OPTIONS] -- CMD...
# Runs CMD ROUNDS times under each tool, interleaved. Options:
#   --prepare FN   FN runs before every run (outside the timing), with the
#                  tool's name as argument
#   --n N          an argument `{N}` in CMD becomes N ...
#   --proot-n M    ... or M under PRoot: a loop guest reports per call, so
#                  PRoot may run fewer calls where it is very slow
#   --floor LABEL  also runs CMD natively with BENCH_SECCOMP_ALLOW=1 (the
#                  guest installs an allow-all seccomp filter), interleaved
#                  with the others, as a second row ROW-floor labelled LABEL
#                  whose native column is that figure and whose other columns
#                  repeat this row's, so that its ratios are against the floor
bench() {
	local row=$1 group=$2 label=$3 unit=$4 target=$5 pin=$6 kind=$7
	shift 7
	local prepare="" n="" proot_n="" floor=""
	while [[ $1 != -- ]]; do
		case $1 in
		--prepare) prepare=$2 ;;
		--n) n=$2 ;;
		--proot-n) proot_n=$2 ;;
		--floor) floor=$2 ;;
		*) say "bench: bad option $1"; exit 2 ;;
		esac
		shift 2
	done
	shift
	printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$group" "$label" "$unit" "$target" >>"$WORK/rows.tsv"
	[[ -n $floor ]] && printf '%s\t%s\t%s\t%s\t%s\n' "$row-floor" "$group" "$floor" "$unit" "" >>"$WORK/rows.tsv"
	say "== $label"
	local round tool arg last stdout=/dev/null
	local -a cmd tools=("${TOOLS[@]}")
	[[ -n $floor ]] && tools=(native floor isotrace env proot)
	[[ $kind == guest ]] && stdout=$WORK/out
	for ((round = 1; round <= ROUNDS; round++)); do
		for tool in "${tools[@]}"; do
			[[ $tool == floor ]] || ((HAVE[$tool])) || continue
			[[ -n $prepare ]] && "$prepare" "$tool"
			cmd=()
			for arg in "$@"; do
				[[ $arg == "{N}" ]] && arg=$n && [[ $tool == proot && -n $proot_n ]] && arg=$proot_n
				[[ $arg == "{EX}" ]] && arg=$(extract_dir "$tool")
				cmd+=("$arg")
			done
			if [[ $tool == floor ]]; then
				run_tool native "$pin" "$stdout" env BENCH_SECCOMP_ALLOW=1 "${cmd[@]}"
				record "$row-floor" native "$round" "$kind"
				continue
			fi
			run_tool "$tool" "$pin" "$stdout" "${cmd[@]}"
			record "$row" "$tool" "$round" "$kind"
			if [[ -n $floor && $tool != native ]]; then
				last=$(tail -n1 "$WORK/results.tsv")
				printf '%s\n' "$row-floor${last#"$row"}" >>"$WORK/results.tsv"
			fi
		done
	done
}

B=$WORK/bin

# Debian's PRoot traps every syscall (it is built without its seccomp
# accelerator): at 15-90 us per getppid, 2,000,000 calls would take up to
# 3 minutes a round, so PRoot does a tenth of them. The figure is per call.
# The floor row shows what any seccomp filter costs an untrapped syscall,
# even one the kernel's action cache answers without running the filter.
if want getppid; then
	for pin in pinned unpinned; do
		bench "getppid-$pin" getppid "getppid loop, $pin (untrapped)" "ns/call" "<= 1.02x native" "$pin" guest \
			--n "$N_GETPPID" --proot-n "$((N_GETPPID / 10))" \
			--floor "getppid loop, $pin, vs the floor: native under an allow-all seccomp filter" \
			-- "$B/getppid" "{N}"
	done
fi

if want stat; then
	for pin in pinned unpinned; do
		bench "stat-$pin" stat "stat loop, $pin (trapped)" "us/call" "<= 10 us/call" "$pin" guest \
			-- "$B/stat" "$N_STAT" /etc/passwd
	done
fi

if want openclose; then
	for pin in pinned unpinned; do
		bench "openclose-$pin" openclose "open+close loop, $pin" "us/call" "" "$pin" guest \
			-- "$B/openclose" "$N_OPEN" /etc/passwd
	done
fi

# tar -x: one uncompressed tarball of $TAR_SRC, extracted into a fresh
# directory for each run, on tmpfs and (secondary) on disk under /var/tmp.
# Where a tool extracts. Under `isotrace --env` the tmpfs work directory is
# below /dev, a global exception that writes through to the host; the env
# extracts into a host directory outside the exceptions instead, so that the
# files land in its private layer (its store is on the same tmpfs).
extract_dir() {
	if [[ $1 == env ]]; then printf '%s\n' "$DISK/extract-env"; else printf '%s\n' "$EXTRACT"; fi
}
fresh_dir() {
	local dir
	dir=$(extract_dir "$1")
	rm -rf "$dir" "$WORK/isohome/envs/bench"
	sync # flush the previous run's writeback so that it is not billed to this one
	mkdir -p "$dir"
}
if want tar; then
	say "== making a tarball of $TAR_SRC"
	tar -cf "$WORK/src.tar" -C "$(dirname "$TAR_SRC")" "$(basename "$TAR_SRC")"
	for pin in pinned unpinned; do
		EXTRACT=$WORK/extract
		bench "tar-shm-$pin" tar "tar -x $TAR_SRC on tmpfs, $pin" "s" "<= 1.6x native" "$pin" wall \
			--prepare fresh_dir -- tar -xf "$WORK/src.tar" -C "{EX}"
	done
	EXTRACT=$DISK/extract
	bench "tar-disk-unpinned" tar "tar -x $TAR_SRC on disk (/var/tmp), unpinned" "s" "" unpinned wall \
		--prepare fresh_dir -- tar -xf "$WORK/src.tar" -C "{EX}"
	rm -rf "$WORK/extract" "$DISK/extract" "$DISK/extract-env" "$WORK/src.tar"
fi

if want find; then
	for pin in pinned unpinned; do
		bench "find-$pin" find "find $FIND_DIR -type f, $pin" "s" "<= 5x native" "$pin" wall \
			-- find "$FIND_DIR" -type f
	done
fi

if want gcc; then
	for pin in pinned unpinned; do
		# shellcheck disable=SC2016 # $1 and $2 are the inner shell's
		bench "gcc-$pin" gcc "$GCC_N x gcc -O2 -c hello.c, $pin" "s" "<= 1.6x native" "$pin" wall \
			-- sh -c 'cd "$1" && i=0 && while [ $i -lt "$2" ]; do gcc -O2 -c hello.c -o hello.o || exit 1; i=$((i + 1)); done' \
			sh "$WORK/gcc" "$GCC_N"
	done
fi

# Scaling runs unpinned: with many threads or processes the scheduler's
# placement is part of what is measured.
if want threads; then
	for t in $THREADS; do
		bench "threads-$t" threads "$t threads x $K_STAT stat, unpinned" "us/stat" "" unpinned guest \
			-- "$B/threads" "$t" "$K_STAT" /etc/passwd
	done
fi

if want procs; then
	for p in $PROCS; do
		bench "procs-$p" procs "$p processes (fork+stat+exit), unpinned" "us/proc" "" unpinned guest \
			-- "$B/procs" "$p" /etc/passwd
	done
fi

# ---------------------------------------------------------------- report

render() {
	awk -F'\t' -v have_proot="${HAVE[proot]}" -v have_iso="${HAVE[isotrace]}" -v have_env="${HAVE[env]}" '
	function fmt(v) {
		if (v >= 100) return sprintf("%.0f", v)
		if (v >= 10) return sprintf("%.1f", v)
		if (v >= 1) return sprintf("%.2f", v)
		return sprintf("%.3f", v)
	}
	# sorts a[1..n] numerically, in place (n is small: one entry per round)
	function isort(a, n,   i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	}
	function median(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
	# cell(row, tool): sets MED[tool] and returns "median (min-max)"
	function cell(row, tool,   n, i, a, key) {
		key = row SUBSEP tool
		if (tool == "proot" && !have_proot) return "n/a"
		if (tool == "isotrace" && !have_iso) return "n/a"
		if (tool == "env" && !have_env) return "n/a"
		if (FAILS[key]) return "FAIL (" FAILS[key] "/" (FAILS[key] + CNT[key]) ")"
		n = CNT[key]
		if (n == 0) return "n/a"
		for (i = 1; i <= n; i++) a[i] = VAL[key, i]
		isort(a, n)
		MED[tool] = median(a, n)
		if (n == 1) return fmt(MED[tool])
		return fmt(MED[tool]) " (" fmt(a[1]) "-" fmt(a[n]) ")"
	}
	function ratio(a, b) { return (a in MED && b in MED && MED[b] > 0) ? sprintf("%.2fx", MED[a] / MED[b]) : "n/a" }
	FILENAME ~ /rows.tsv$/ { ROWS[++NROWS] = $1; LABEL[$1] = $3; UNIT[$1] = $4; TARGET[$1] = $5; next }
	FILENAME ~ /results.tsv$/ {
		key = $1 SUBSEP $2
		if ($4 == "FAIL") FAILS[key]++
		else VAL[key, ++CNT[key]] = $4
		next
	}
	FILENAME ~ /stats.tsv$/ {
		SN[$1]++
		STOPS[$1] = $2
		if ($3 > RSS[$1]) RSS[$1] = $3
		next
	}
	END {
		print "| workload | unit | native | isotrace | isotrace --env | proot | isotrace/native | env/native | isotrace/proot | env/proot | proot/native | target |"
		print "|---|---|---|---|---|---|---|---|---|---|---|---|"
		for (r = 1; r <= NROWS; r++) {
			row = ROWS[r]
			delete MED
			n = cell(row, "native"); i = cell(row, "isotrace"); e = cell(row, "env"); p = cell(row, "proot")
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", LABEL[row], UNIT[row], n, i, e, p,
				ratio("isotrace", "native"), ratio("env", "native"), ratio("isotrace", "proot"),
				ratio("env", "proot"), ratio("proot", "native"), TARGET[row]
		}
		print ""
		print "Supervisor (isotrace --stats, last run of each workload: ptrace stops; peak RSS over all runs):"
		print ""
		print "| workload | stops | peak RSS (KiB) |"
		print "|---|---|---|"
		for (r = 1; r <= NROWS; r++) {
			row = ROWS[r]
			if (row ~ /-floor$/) continue
			if (SN[row]) printf "| %s | %s | %s |\n", LABEL[row], STOPS[row], RSS[row]
			else printf "| %s | n/a | n/a |\n", LABEL[row]
		}
	}' "$WORK/rows.tsv" "$WORK/results.tsv" "$WORK/stats.tsv"
}

{
	echo "# isotrace benchmarks"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- command: benches/run.sh --rounds $ROUNDS$( ((QUICK)) && echo ' --quick')${ONLY:+ --only $ONLY}"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r); load average at start $LOAD_AT_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- isotrace: ${ISO_VERSION:-unknown} ($ISOTRACE), source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)$( ((${#STATS_FLAG[@]})) || echo ', --stats not supported')"
	if ((HAVE[proot])); then echo "- $PROOT_VERSION, run as plain \`proot CMD\`"; else echo "- $PROOT_VERSION"; fi
	echo "- isotrace --env: isolation in env \`bench\`, its store (the private layer) on the work directory's tmpfs, reset before each tar run; it extracts into a host directory outside the /dev exception, so its on-disk tar row writes to that tmpfs too; the isotrace column is --no-isolation"
	echo "- rounds: $ROUNDS, interleaved native/isotrace/env/proot; figures are median (min-max); pinned = \`taskset -c $PIN_CPU\` around the whole tool"
	echo "- \"vs the floor\" rows: the native column is the guest natively under a one-instruction RET_ALLOW seccomp filter (what any seccomp supervisor costs an untrapped call); the other columns repeat the row above"
	echo "- loop guests time their own loop (getppid: $N_GETPPID calls, $((N_GETPPID / 10)) under PRoot; stat: $N_STAT; open+close: $N_OPEN; threads: $K_STAT stat each); tar/find/gcc are wall-clock time including the tool's start-up"
	echo
	render
} >"$OUT"

echo
cat "$OUT"
echo
echo "(written to $OUT)"
if ((FAILED)); then
	say "run.sh: some runs failed natively or under isotrace (see above)"
	exit 1
fi
