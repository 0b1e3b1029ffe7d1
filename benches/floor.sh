#!/usr/bin/env bash
# benches/floor.sh: the floor of a ptrace stop per trapped call (issue #3's
# speed targets), measured next to isotrace.
#
# benches/guests/floor.c is a minimal ptrace+seccomp supervisor with no
# policy that traps exactly the calls `isotrace --env` traps (this script
# checks its table against arch/src/table_x86_64.rs first) and does, at each
# stop, nothing (cont), the path read (read), the read plus one register
# write (poke), or the read plus a write of the path into tracee memory and
# the register write (rewrite). Each workload
# runs natively, under the three floors, under `isotrace --no-isolation --`
# and under `isotrace --env bench --`, interleaved round by round, pinned
# (`taskset -c CPU` around the whole tool) and unpinned. Printed: median
# (min-max) seconds, the ratio to native, the stops of each run, and the
# cost per stop, (median - native median) / stops. The script never asserts
# speed. It exits 1 only when a workload fails (or isotrace does not run, or
# floor.c's trap table no longer matches isotrace's).
#
# Why the method: see benches/run.sh and ../shared/PERF-NOTES.md (noise on
# this VM, placement of tracer and tracee, tmpfs for file-creating work).
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and awk must use '.' as the decimal point

usage() {
	cat <<'EOF'
usage: benches/floor.sh [--rounds N] [--only NAME[,NAME...]] [--quick] [--no-build]

  --rounds N   rounds per workload (default 5; 1 with --quick)
  --only LIST  run only these workloads: tar find (comma-separated)
  --quick      tiny sizes (/usr/include/linux, find /usr/include): a smoke test
  --no-build   do not run `cargo build --release` first

environment:
  ISOTRACE     the binary to measure (default: target/release/isotrace)
  CC           the C compiler for floor.c (default: cc)
  PIN_CPU      the CPU for pinned rows (default: 1, or 0 on a 1-CPU machine)
  BENCH_OUT    where the markdown results go (default: /tmp/isotrace-floor.md)
EOF
}

ROUNDS=""
QUICK=0
ONLY=""
BUILD=1
while (($#)); do
	case $1 in
	--rounds)
		[[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "floor.sh: --rounds needs a positive number" >&2; exit 2; }
		ROUNDS=$2
		shift 2
		;;
	--only)
		[[ -n ${2:-} ]] || { echo "floor.sh: --only needs a workload name" >&2; exit 2; }
		ONLY=$2
		shift 2
		;;
	--quick) QUICK=1; shift ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "floor.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
for w in ${ONLY//,/ }; do
	[[ " tar find " == *" $w "* ]] || { echo "floor.sh: unknown workload '$w' (known: tar find)" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISOTRACE=${ISOTRACE:-$ROOT/target/release/isotrace}
OUT=${BENCH_OUT:-/tmp/isotrace-floor.md}
if [[ -z ${PIN_CPU:-} ]]; then
	PIN_CPU=1
	(($(nproc) > 1)) || PIN_CPU=0
fi
if ((QUICK)); then
	ROUNDS=${ROUNDS:-1} RUN_TIMEOUT=60 TAR_SRC=/usr/include/linux FIND_DIR=/usr/include
else
	ROUNDS=${ROUNDS:-5} RUN_TIMEOUT=900 TAR_SRC=/usr/include FIND_DIR=/usr
fi

want() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }
say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- set-up

if ((BUILD)) && command -v cargo >/dev/null; then
	say "== cargo build --release"
	if ! (cd "$ROOT" && cargo build --release --quiet) && [[ ! -x $ISOTRACE ]]; then
		say "floor.sh: cargo build --release failed and $ISOTRACE does not exist"
		exit 1
	fi
fi

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /dev/shm/isotrace-floor.XXXXXX 2>/dev/null || mktemp -d)
DISK=$(mktemp -d /var/tmp/isotrace-floor.XXXXXX)
cleanup() { rm -rf "$WORK" "$DISK"; }
trap cleanup EXIT

say "== compiling benches/guests/floor.c"
"${CC:-cc}" -O2 -Wall -Wextra -o "$WORK/floor" "$ROOT/benches/guests/floor.c"

# floor.c's table is a copy of isotrace's (every row that is not Allow, with
# the argument positions that are paths): a floor that traps other calls
# would measure something else, so a difference stops the run.
# shellcheck disable=SC2016 # the sed and awk programs are single-quoted on purpose
sed -nE 's/^ *gone!\(([0-9]+), ([a-z_0-9]+), \[([^]]*)\].*/\1 \2 Deny(libc::ENOSYS) \3/p
	s/^ *sc!\(([0-9]+), ([a-z_0-9]+), \[([^]]*)\], ([A-Za-z]+(\([^)]*\))?).*/\1 \2 \4 \3/p' \
	"$ROOT/arch/src/table_x86_64.rs" |
	awk '$3 != "Allow" {
		p = ""
		for (i = 4; i <= NF; i++) { sub(/,$/, "", $i); if ($i == "Path") p = p (p == "" ? "" : ",") (i - 4) }
		print $1, $2, $3, (p == "" ? "-" : p)
	}' >"$WORK/table.rs.txt"
"$WORK/floor" --table >"$WORK/table.c.txt"
if ! diff -u "$WORK/table.rs.txt" "$WORK/table.c.txt" >"$WORK/table.diff"; then
	say "floor.sh: benches/guests/floor.c's trap table differs from arch/src/table_x86_64.rs (- isotrace, + floor.c):"
	head -n 40 "$WORK/table.diff" >&2
	exit 1
fi

# The probe checks that isotrace really runs the command, as run.sh's does.
probe_rc=0
probe_out=$(timeout -k 5 30 "$ISOTRACE" --no-isolation -- sh -c 'echo probe-ok; exit 3' </dev/null 2>"$WORK/probe.err") || probe_rc=$?
if [[ $probe_out != probe-ok || $probe_rc != 3 ]]; then
	say "floor.sh: isotrace does not work: \`$ISOTRACE --no-isolation -- sh -c 'echo probe-ok; exit 3'\` gave exit $probe_rc, stdout '$probe_out', stderr:"
	head -n5 "$WORK/probe.err" >&2 || true
	exit 1
fi
ISO_VERSION=$(timeout -k 5 30 "$ISOTRACE" --version 2>/dev/null | head -n1 || true)
# The env's settings decide its trap set, and floor follows them: fd
# metadata calls are trapped only while the host is writable (-w), and with
# lazy listings getdents64 is untrapped until the group changes its env or
# opens one of its directories (-l; find does neither, tar lists nothing).
mkdir -p "$WORK/run"
ISO_ENV=(env "ISOTRACE_HOME=$WORK/isohome" "XDG_RUNTIME_DIR=$WORK/run" "$ISOTRACE")
ENV_CMD=("${ISO_ENV[@]}" --env bench --stats --)
HOST=$(timeout -k 5 60 "${ENV_CMD[@]}" /bin/true 2>&1 >/dev/null | sed -n 's/^isotrace: host: //p')
LAZY=$(timeout -k 5 60 "${ISO_ENV[@]}" config show --env bench 2>/dev/null | sed -nE 's/^isolation\.lazy_listings = (true|false).*/\1/p')
FLOOR_OPTS=()
[[ $HOST == read-only ]] || FLOOR_OPTS+=(-w)
[[ $LAZY == true ]] && FLOOR_OPTS+=(-l)
rm -rf "$WORK/isohome/envs/bench"

# ---------------------------------------------------------------- running

# $WORK/results.tsv: ROW TOOL ROUND SECONDS|FAIL STOPS; $WORK/rows.tsv: ROW LABEL
: >"$WORK/results.tsv"
: >"$WORK/rows.tsv"
TOOLS=(native cont read poke rewrite noiso env)
FAILED=0

# run_tool TOOL PIN CMD...: sets RC, ELAPSED (wall seconds, the tool's
# start-up included) and STOPS (from floor's or isotrace's exit line).
run_tool() {
	local tool=$1 pin=$2
	shift 2
	local -a pre=(timeout -k 10 "$RUN_TIMEOUT")
	[[ $pin == pinned ]] && pre+=(taskset -c "$PIN_CPU")
	case $tool in
	native) ;;
	cont | read | poke | rewrite) pre+=("$WORK/floor" "${FLOOR_OPTS[@]}" "$tool" --) ;;
	noiso) pre+=("$ISOTRACE" --no-isolation --stats --) ;;
	env) pre+=("${ENV_CMD[@]}") ;;
	esac
	local t0=$EPOCHREALTIME t1
	set +e
	"${pre[@]}" "$@" </dev/null >/dev/null 2>"$WORK/err"
	RC=$?
	set -e
	t1=$EPOCHREALTIME
	ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
	STOPS=$(sed -nE 's/^(floor|isotrace: stats): stops=([0-9]+).*/\2/p' "$WORK/err" | tail -n1)
}

# Where a tool extracts: under `isotrace --env` the tmpfs work directory is
# below /dev, a global exception that writes through to the host, so the env
# extracts into a host directory outside the exceptions; its files land in
# its private layer, on the same tmpfs (as benches/run.sh does).
extract_dir() {
	if [[ $1 == env ]]; then printf '%s\n' "$DISK/extract-env"; else printf '%s\n' "$WORK/extract"; fi
}
fresh_dir() {
	local dir
	dir=$(extract_dir "$1")
	rm -rf "$dir" "$WORK/isohome/envs/bench"
	sync # flush the previous run's writeback so that it is not billed to this one
	mkdir -p "$dir"
}

# bench ROW LABEL PIN [--prepare FN] -- CMD...: ROUNDS rounds, the tools
# interleaved in each; an argument {EX} becomes the tool's extract dir.
bench() {
	local row=$1 label=$2 pin=$3 prepare=""
	shift 3
	[[ $1 == --prepare ]] && prepare=$2 && shift 2
	shift
	printf '%s\t%s\n' "$row" "$label" >>"$WORK/rows.tsv"
	say "== $label"
	local round tool arg value
	local -a cmd
	for ((round = 1; round <= ROUNDS; round++)); do
		for tool in "${TOOLS[@]}"; do
			[[ -n $prepare ]] && "$prepare" "$tool"
			cmd=()
			for arg in "$@"; do
				[[ $arg == "{EX}" ]] && arg=$(extract_dir "$tool")
				cmd+=("$arg")
			done
			run_tool "$tool" "$pin" "${cmd[@]}"
			value=$ELAPSED
			if ((RC != 0)); then
				value=FAIL
				FAILED=1
				say "   $row: $tool FAILED (exit $RC); its stderr:"
				tail -n5 "$WORK/err" | sed 's/^/     /' >&2 || true
			fi
			printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$tool" "$round" "$value" "${STOPS:--}" >>"$WORK/results.tsv"
		done
	done
}

if want tar; then
	say "== making a tarball of $TAR_SRC"
	tar -cf "$WORK/src.tar" -C "$(dirname "$TAR_SRC")" "$(basename "$TAR_SRC")"
	for pin in pinned unpinned; do
		bench "tar-$pin" "tar -x $TAR_SRC on tmpfs, $pin" "$pin" --prepare fresh_dir \
			-- tar -xf "$WORK/src.tar" -C "{EX}"
	done
	rm -rf "$WORK/extract" "$DISK/extract-env" "$WORK/src.tar"
fi

if want find; then
	for pin in pinned unpinned; do
		bench "find-$pin" "find $FIND_DIR -type f, $pin" "$pin" -- find "$FIND_DIR" -type f
	done
fi

# ---------------------------------------------------------------- report

render() {
	awk -F'\t' '
	function fmt(v) { return v >= 10 ? sprintf("%.2f", v) : sprintf("%.3f", v) }
	function isort(a, n,   i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	}
	function median(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
	FILENAME ~ /rows.tsv$/ { ROWS[++NROWS] = $1; LABEL[$1] = $2; next }
	{
		key = $1 SUBSEP $2
		if ($4 == "FAIL") FAILS[key]++
		else VAL[key, ++CNT[key]] = $4
		if ($5 != "-") STOPV[key, ++SCNT[key]] = $5
	}
	END {
		split("native cont read poke rewrite noiso env", TOOL, " ")
		NAME["native"] = "native"; NAME["cont"] = "floor cont"; NAME["read"] = "floor read"; NAME["poke"] = "floor poke"
		NAME["rewrite"] = "floor rewrite"; NAME["noiso"] = "isotrace --no-isolation"; NAME["env"] = "isotrace --env"
		print "| workload | tool | seconds, median (min-max) | / native | stops | us per stop over native |"
		print "|---|---|---|---|---|---|"
		for (r = 1; r <= NROWS; r++) {
			row = ROWS[r]
			nat = ""
			for (t = 1; t <= 7; t++) {
				tool = TOOL[t]; key = row SUBSEP tool
				n = CNT[key]
				if (FAILS[key] || n == 0) {
					printf "| %s | %s | FAIL (%d/%d) | | | |\n", LABEL[row], NAME[tool], FAILS[key], FAILS[key] + n
					continue
				}
				delete a
				for (i = 1; i <= n; i++) a[i] = VAL[key, i]
				isort(a, n); m = median(a, n)
				if (tool == "native") nat = m
				cell = fmt(m) (n > 1 ? " (" fmt(a[1]) "-" fmt(a[n]) ")" : "")
				ratio = nat != "" && nat > 0 ? sprintf("%.2fx", m / nat) : "n/a"
				stops = "-"; per = "-"
				if (SCNT[key]) {
					delete s
					for (i = 1; i <= SCNT[key]; i++) s[i] = STOPV[key, i]
					isort(s, SCNT[key]); stops = median(s, SCNT[key])
					if (stops > 0 && nat != "") per = sprintf("%.2f", (m - nat) / stops * 1e6)
				}
				printf "| %s | %s | %s | %s | %s | %s |\n", LABEL[row], NAME[tool], cell, ratio, stops, per
			}
		}
	}' "$WORK/rows.tsv" "$WORK/results.tsv"
}

{
	echo "# ptrace floor benchmark"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- command: benches/floor.sh --rounds $ROUNDS$( ((QUICK)) && echo ' --quick')${ONLY:+ --only $ONLY}"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r); load average at start $LOAD_AT_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- isotrace: ${ISO_VERSION:-unknown} ($ISOTRACE), source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown); env host: ${HOST:-unknown}, lazy listings: ${LAZY:-unknown}; floor ${FLOOR_OPTS[*]:+${FLOOR_OPTS[*]} }(the env's trap set)"
	echo "- rounds: $ROUNDS, interleaved native/cont/read/poke/rewrite/--no-isolation/--env; median (min-max); pinned = \`taskset -c $PIN_CPU\` around the whole tool; stops: median of the runs (floor's seccomp stops; isotrace's --stats stops, exit stops included)"
	echo
	render
} >"$OUT"

echo
cat "$OUT"
echo
echo "(written to $OUT)"
if ((FAILED)); then
	say "floor.sh: some runs failed (see above)"
	exit 1
fi
