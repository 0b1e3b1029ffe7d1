#!/usr/bin/env bash
# benches/migrate.sh: live-migration downtime with and without --pre-copy
# (issue #6).
#
# A writer (tests/guests/mig_dirty.c) holds SIZE MiB of anonymous memory
# and rewrites RATE pages per second, checking every page as it goes. It
# runs under `isotrace run --env A`, is moved with `isotrace migrate
# --to-env B` (the full stream over 127.0.0.1: dump, layer, image, restore,
# confirmation), once stop-and-copy and once with --pre-copy, interleaved
# round by round. The script prints the median (min-max) downtime, total
# time, bytes sent and pre-copy rounds, and the ratio pre-copy /
# stop-and-copy for each size. It checks that the copy runs on with no bad
# page; it never asserts speed. With --procs 2 the group is a shell with
# two writers of SIZE MiB each, pre-copied one tracker per process. With
# --layer MIB the source env's private layer holds MIB MiB more (files of
# 64 KiB, written more than a second before the move): stop-and-copy sends
# it in the downtime, pre-copy while the group runs.
#
# Pre-copy runs twice per round: with the destination filling the pages
# it holds before the group runs ("pre-copy eager", ISOTRACE_POST_COPY=0)
# and after ("pre-copy post-copy", the default): its downtime then ends
# when the group runs, and the "post-copy" column is the time until every
# held page was in (pages pushed in the background / filled on a fault).
# --modes chooses among stop, eager and post.
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'USAGE'
usage: benches/migrate.sh [--rounds N] [--sizes "64 512"] [--rate PAGES_PER_SEC] [--modes "stop eager post"] [--procs 1|2] [--layer MIB] [--link RATE] [--no-build]

  --rounds N    migrations per size and mode (default 3)
  --sizes LIST  resident sizes in MiB (default "64 512")
  --rate N      pages the writer rewrites per second (default 2000, 8 MiB/s)
  --modes LIST  which migrations, interleaved per round (default all three):
                stop (stop-and-copy), eager (pre-copy, held pages filled
                before the group runs), post (pre-copy with post-copy)
  --procs 2     two writers (each SIZE MiB, RATE pages/s) under one shell
  --layer MIB   the env's private layer holds MIB MiB of files (default 0)
  --link RATE   migrate between two network namespaces over a veth shaped
                to RATE (tc tbf syntax, e.g. 1gbit); needs root
  --no-build    do not run `cargo build --release` first

environment:
  ISOTRACE   the binary to measure (default: target/release/isotrace)
USAGE
}

ROUNDS=3
SIZES="64 512"
RATE=2000
BUILD=1
LINK=""
PROCS=1
LAYER=0
MODES="stop eager post"
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS="$2"; shift 2 ;;
	--sizes) SIZES="$2"; shift 2 ;;
	--rate) RATE="$2"; shift 2 ;;
	--modes) MODES="$2"; shift 2 ;;
	--link) LINK="$2"; shift 2 ;;
	--procs) PROCS="$2"; shift 2 ;;
	--layer) LAYER="$2"; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "migrate.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$BUILD" = 1 ]; then
	(cd "$ROOT" && cargo build -q --release)
fi
ISOTRACE="${ISOTRACE:-$ROOT/target/release/isotrace}"
WORK="$(mktemp -d /tmp/isotrace-migrate-bench.XXXXXX)"
COPIES=()
NSA="isomig-bench-a-$$"
NSB="isomig-bench-b-$$"
cleanup() {
	for p in "${COPIES[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	if [ -n "$LINK" ]; then
		ip netns del "$NSA" 2>/dev/null || true
		ip netns del "$NSB" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
gcc -O2 -o "$WORK/mig_dirty" "$ROOT/tests/guests/mig_dirty.c"
export ISOTRACE_HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$ISOTRACE_HOME" "$XDG_RUNTIME_DIR" "$WORK/home2"
export ISOTRACE_MIGRATE_TOKEN="bench-token-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
IN_A=()
IN_B=()
if [ -n "$LINK" ]; then
	ip netns add "$NSA"
	ip netns add "$NSB"
	ip link add vmba$$ netns "$NSA" type veth peer name vmbb$$ netns "$NSB"
	ip -n "$NSA" addr add 10.214.0.1/24 dev vmba$$
	ip -n "$NSB" addr add 10.214.0.2/24 dev vmbb$$
	for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
	ip -n "$NSA" link set vmba$$ up
	ip -n "$NSB" link set vmbb$$ up
	tc -n "$NSA" qdisc add dev vmba$$ root tbf rate "$LINK" burst 1mbit latency 100ms
	IN_A=(ip netns exec "$NSA")
	IN_B=(ip netns exec "$NSB" env ISOTRACE_HOME="$WORK/home2")
fi

# waits up to 120 s for FILE to hold at least N "ok" lines
wait_ok() {
	local file="$1" n="$2" i
	for i in $(seq 1200); do
		if [ -f "$file" ] && [ "$(grep -c '^ok' "$file" || true)" -ge "$n" ]; then return 0; fi
		sleep 0.1
	done
	echo "migrate.sh: $file never reached $n lines" >&2
	return 1
}

# one migration: prints "downtime_ms total_ms bytes_sent rounds mode
# dump_ms layer_ms send_ms restore_ms post_copy_ms pushed faulted" (dump
# to restore: parts of the downtime; the last three: post-copy's time
# and pages, 0 without)
one() {
	local size="$1" mode="$2" n="$3" fill=1
	[ "$mode" = eager ] && fill=0
	local src="A$n" dst="B$n" out="$WORK/out$n"
	local guest=("$WORK/mig_dirty" "$out" "$WORK/pid$n" "$size" "$RATE")
	if [ "$PROCS" = 2 ]; then
		# sh -c SCRIPT $0 $1...: two writers, the second writing OUT.2.
		guest=(/bin/sh -c '"$0" "$1" "$2" "$4" "$5" & "$0" "$1.2" "$3" "$4" "$5" & wait' \
			"$WORK/mig_dirty" "$out" "$WORK/pid$n" "$WORK/pid$n.2" "$size" "$RATE")
	fi
	if [ "$LAYER" -gt 0 ]; then
		# Written into the env's store directly (its layout is isotrace's
		# own), then left to age past pre-copy's one-second ctime margin.
		"${IN_A[@]}" "$ISOTRACE" env create "$src" >/dev/null
		python3 - "$ISOTRACE_HOME/envs/$src/upper/opt/layer" "$LAYER" <<'PY'
import os, sys
d, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
chunk = os.urandom(65536)
for i in range(mib * 16):
    sub = os.path.join(d, str(i // 256))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}"), "wb") as f:
        f.write(chunk)
PY
		sleep 1.2
	fi
	"${IN_A[@]}" "$ISOTRACE" run --env "$src" --group mb -- "${guest[@]}" >/dev/null 2>&1 &
	local sup=$!
	local priv="$ISOTRACE_HOME/envs/$src/upper$out"
	wait_ok "$priv" 3
	[ "$PROCS" = 2 ] && wait_ok "$priv.2" 3
	local flag=()
	[ "$mode" != stop ] && flag=(--pre-copy)
	local json dest=(--to-env "$dst") moved="$ISOTRACE_HOME/envs/$dst/upper$out"
	if [ -n "$LINK" ]; then
		"${IN_B[@]}" env ISOTRACE_POST_COPY=$fill "$ISOTRACE" receive --listen 10.214.0.2:7100 --once 2>"$WORK/rcv$n" &
		local i
		for i in $(seq 100); do grep -qs receiving "$WORK/rcv$n" && break; sleep 0.05; done
		dest=(--to 10.214.0.2:7100)
		moved="$WORK/home2/envs/$src/upper$out"
	fi
	json="$(ISOTRACE_POST_COPY=$fill "$ISOTRACE" migrate mb "${dest[@]}" "${flag[@]}" --json 2>"$WORK/err$n")" || {
		cat "$WORK/err$n" >&2
		kill -KILL "$sup" 2>/dev/null || true
		return 1
	}
	wait "$sup" || true
	local pids f had
	pids="$(python3 -c 'import json,sys; print(*json.loads(sys.argv[1])["dest_pids"])' "$json")"
	COPIES+=($pids)
	local files=("$moved")
	[ "$PROCS" = 2 ] && files+=("$moved.2")
	for f in "${files[@]}"; do
		had="$(grep -c '^ok' "$f")"
		wait_ok "$f" $((had + 5))
		if grep -q BAD "$f"; then
			echo "migrate.sh: the copy found a bad page ($size MiB, $mode):" >&2
			grep BAD "$f" | head -3 >&2
			exit 1
		fi
	done
	for f in $pids; do kill -KILL "$f" 2>/dev/null || true; done
	"$ISOTRACE" env rm --force "$src" >/dev/null 2>&1 || true
	"$ISOTRACE" env rm --force "$dst" >/dev/null 2>&1 || true
	ISOTRACE_HOME="$WORK/home2" "$ISOTRACE" env rm --force "$src" >/dev/null 2>&1 || true
	python3 -c '
import json, sys
r = json.loads(sys.argv[1])
pc = r.get("post_copy") or {}
mode = r["mode"].split(" (")[0] + ("+" + r["fill"] if r.get("fill") else "")
print(r["downtime_ms"], r["total_ms"], r["bytes_sent"], len(r["rounds"]), mode, r["dump_ms"], r["layer_ms"], r["send_ms"], r["restore_ms"], pc.get("ms", 0), pc.get("pushed_pages", 0), pc.get("fault_pages", 0))' "$json"
}

# MiB/s of a plain TCP stream of BW_MIB MiB over the path the migrations
# take (the shaped veth with --link, else loopback), measured once per
# round between the migrations: the reference for "total time <= 1.5 x
# bytes sent / link bandwidth" (issue #6).
BW_MIB=256
bandwidth() {
	local host=127.0.0.1 port=7199 rx
	[ -n "$LINK" ] && host=10.214.0.2
	"${IN_B[@]}" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
while c.recv(1 << 20):
    pass
c.sendall(b"k")
' "$host" "$port" >"$WORK/bw.rx" &
	rx=$!
	local i
	for i in $(seq 100); do grep -qs listening "$WORK/bw.rx" && break; sleep 0.05; done
	"${IN_A[@]}" python3 -c '
import socket, sys, time
mib = int(sys.argv[3])
buf = bytes(1 << 20)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
t = time.monotonic()
for _ in range(mib):
    c.sendall(buf)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print("%.1f" % (mib / (time.monotonic() - t)))
' "$host" "$port" "$BW_MIB"
	wait "$rx"
}

# median and range of the Nth column of stdin
stat() {
	sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.1f (%.1f-%.1f)", m, v[1], v[NR]}'
}

where="--to-env (127.0.0.1)"
[ -n "$LINK" ] && where="--to, between two network namespaces over a veth shaped to $LINK"
echo "isotrace migrate $where: ${ROUNDS} rounds per row, ${PROCS} writer(s) each rewriting ${RATE} pages/s ($((RATE * 4 / 1024)) MiB/s)"
echo "kernel $(uname -r), $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$LAYER" -gt 0 ] && echo "env layer: $LAYER MiB of 64 KiB files"
printf '\n| RSS | mode | downtime ms | of it: dump / layer / send / restore ms | total ms | MiB sent | rounds | post-copy ms (pages pushed / on fault) |\n|---|---|---|---|---|---|---|---|\n'
n=0
ratio_rows=()
med() { sort -g | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
bw_rows=()
for size in $SIZES; do
	for m in $MODES; do : >"$WORK/$m.txt"; done
	: >"$WORK/bw.txt"
	for r in $(seq "$ROUNDS"); do
		bandwidth >>"$WORK/bw.txt"
		for m in $MODES; do
			n=$((n + 1)); one "$size" "$m" "$n" >>"$WORK/$m.txt"
		done
	done
	bw="$(med <"$WORK/bw.txt")"
	for f in $MODES; do
		tm="$(awk '{print $2}' "$WORK/$f.txt" | med)"
		bm="$(awk '{print $3}' "$WORK/$f.txt" | med)"
		bw_rows+=("$(awk -v bw="$bw" -v z="$size" -v m="$f" -v tm="$tm" -v bm="$bm" 'BEGIN {
			wire = bm / 1048576 / bw * 1000
			printf "%s MiB %s: total %.0f ms; %.0f MiB sent at %.0f MiB/s = %.0f ms on the wire; total / wire = %.2f", z, m, tm, bm / 1048576, bw, wire, tm / wire
		}')")
	done
	for f in $MODES; do
		file="$WORK/$f.txt"
		mode="$(awk '{print $5}' "$file" | sort -u | tr '\n' ' ')"
		down="$(awk '{print $1}' "$file" | stat)"
		total="$(awk '{print $2}' "$file" | stat)"
		mib="$(awk '{print $3 / 1048576}' "$file" | stat)"
		rounds="$(awk '{print $4}' "$file" | stat)"
		parts="$(for c in 6 7 8 9; do awk -v c=$c '{print $c}' "$file" | sort -g | awk '{v[NR]=$1} END {printf "%.0f", (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; echo; done | paste -sd/ | sed 's|/| / |g')"
		post="-"
		if [ "$f" = post ]; then
			post="$(awk '{print $10}' "$file" | stat) ($(awk '{print $11}' "$file" | med) / $(awk '{print $12}' "$file" | med))"
		fi
		printf '| %s MiB | %s | %s | %s | %s | %s | %s | %s |\n' "$size" "$mode" "$down" "$parts" "$total" "$mib" "$rounds" "$post"
	done
	for f in $MODES; do
		[ "$f" = stop ] && continue
		for base in stop eager; do
			[ "$base" = "$f" ] && continue
			[ -s "$WORK/$base.txt" ] || continue
			ds="$(awk '{print $1}' "$WORK/$base.txt" | med)"
			dp="$(awk '{print $1}' "$WORK/$f.txt" | med)"
			ratio_rows+=("$(awk -v s="$ds" -v p="$dp" -v z="$size" -v a="$f" -v b="$base" 'BEGIN {printf "%s MiB: downtime %s / %s = %.2f", z, a, b, p / s}')")
		done
	done
done
echo
for r in "${ratio_rows[@]}"; do echo "$r"; done
echo
echo "total migration time against the path's bandwidth (a plain TCP stream of $BW_MIB MiB, once per round, median):"
for r in "${bw_rows[@]}"; do echo "$r"; done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
