#!/usr/bin/env bash
# Time `weir show` against BuildStream 2.8.1's `bst show` on the same
# generated projects (issue 4, "Speed and memory"), and with cache keys
# (issue 5, "Speed"). A benchmark, not a test.
#
# Usage: bench/show.sh [--weir-only] [--sizes "1000 10000 50000"]
#                      [--dense-sizes "2000"] [--huge] [--bst-max N]
#                      [--key-sizes "10000"] [--key-dense-sizes "5000"]
#                      [--runs R] [--warmup W] [--workdir DIR]
#
#   --weir-only        do not install or run bst (weir figures only)
#   --sizes LIST       layered project sizes (default "1000 10000 50000")
#   --dense-sizes LIST dense project sizes (default "2000"; "" for none)
#   --huge             also N=100000 layered, weir only (bst would take far
#                      too long there)
#   --bst-max N        run bst only for projects of at most N elements; bst
#                      needs minutes at N=50000 (e.g. --bst-max 10000 skips it)
#   --key-sizes LIST   layered sizes shown with --format '%{name} %{full-key}'
#                      (default "10000"; "" for none)
#   --key-dense-sizes LIST
#                      dense sizes shown with keys (default "5000"; "" for none)
#   --runs R           runs per measurement, the median is reported (default 1)
#   --warmup W         untimed runs of each tool before its timed ones
#                      (default 1): the first run after a project is written
#                      still meets the generator's writeback and cold
#                      directory caches, for both tools alike
#   --workdir DIR      scratch directory (default: a fresh mktemp -d, kept)
#
# Environment:
#   WEIR_PEER_CACHE    where the bst virtualenv lives, outside the clone
#                      (default $HOME/.cache/weir-peers; may start empty:
#                      ../shared/peers/bst/setup.sh installs into it)
#   CARGO_TARGET_DIR   cargo target directory for the release build of weir
#   WEIR               use this weir executable instead of building one
#
# Both tools run `show --format '%{name}' target.bst` (and, for the key
# sizes, `show --format '%{name} %{full-key}' target.bst`) from the project
# directory with an empty user configuration; bst gets a fresh cache
# directory each run (as show_bench.sh's "cold" mode), weir has no cache.
# Each run is timed around the child's fork, exec and wait4: wall time to
# the microsecond, user + system CPU time and peak RSS from its rusage (for
# bst: its largest single process, bst itself or buildbox-casd). The outputs of the two tools
# are compared line by line; a mismatch is reported in the table and makes
# the script exit with status 1 (for keys: different keys are a bug).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${WEIR_SHARED:-$(cd "$ROOT/../shared" && pwd)}
GEN=$SHARED/bench/gen_project.py
BST_SETUP=$SHARED/peers/bst/setup.sh

WEIR_ONLY=0
SIZES="1000 10000 50000"
DENSE_SIZES="2000"
HUGE=0
BST_MAX=0   # 0 = no limit
KEY_SIZES="10000"
KEY_DENSE_SIZES="5000"
RUNS=1
WARMUP=1
WORKDIR=

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }

while [ $# -gt 0 ]; do
    case $1 in
        --weir-only) WEIR_ONLY=1 ;;
        --sizes) SIZES=${2?--sizes needs a list}; shift ;;
        --dense-sizes) DENSE_SIZES=${2?--dense-sizes needs a list}; shift ;;
        --huge) HUGE=1 ;;
        --bst-max) BST_MAX=${2?--bst-max needs a number}; shift ;;
        --key-sizes) KEY_SIZES=${2?--key-sizes needs a list}; shift ;;
        --key-dense-sizes) KEY_DENSE_SIZES=${2?--key-dense-sizes needs a list}; shift ;;
        --runs) RUNS=${2?--runs needs a number}; shift ;;
        --warmup) WARMUP=${2?--warmup needs a number}; shift ;;
        --workdir) WORKDIR=${2?--workdir needs a directory}; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

WORKDIR=${WORKDIR:-$(mktemp -d -t weir-show-bench.XXXXXX)}
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
log() { echo "# $*" >&2; }

# --- peers and binaries ----------------------------------------------------
BST=
if [ "$WEIR_ONLY" -eq 0 ]; then
    PEER_CACHE=${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}
    VENV=$PEER_CACHE/bst-2.8.1
    mkdir -p "$PEER_CACHE"
    if [ ! -x "$VENV/bin/bst" ] || ! "$VENV/bin/bst" --version 2>/dev/null | grep -q '^2\.8\.1'; then
        log "installing BuildStream 2.8.1 into $VENV (pip; takes a few minutes)"
        bash "$BST_SETUP" "$VENV" >"$WORKDIR/bst-setup.log" 2>&1 || {
            echo "bst setup failed; see $WORKDIR/bst-setup.log" >&2
            tail -5 "$WORKDIR/bst-setup.log" >&2
            exit 1
        }
    fi
    BST=$VENV/bin/bst
    log "bst: $BST ($("$BST" --version))"
fi

if [ -z "${WEIR:-}" ]; then
    log "building weir (release)"
    (cd "$ROOT" && cargo build --release -q -p weir-scheduler --bin weir)
    WEIR=${CARGO_TARGET_DIR:-$ROOT/target}/release/weir
fi
[ -x "$WEIR" ] || { echo "weir executable not found at $WEIR" >&2; exit 1; }
log "weir: $WEIR"

export XDG_CONFIG_HOME=$WORKDIR/config   # empty: default user configuration
mkdir -p "$XDG_CONFIG_HOME"

# --- measuring ---------------------------------------------------------------
# The --format string of a mode: "name" or "keys".
format_of() {
    if [ "$1" = keys ]; then echo '%{name} %{full-key}'; else echo '%{name}'; fi
}

# measure TOOL PROJ TAG RUN FORMAT: runs one `show`, prints "wall_s cpu_s rss_MiB",
# or "FAIL" when the tool failed (its stderr is kept in the workdir).
measure() {
    local tool=$1 proj=$2 tag=$3 run=$4 format=$5
    local out=$WORKDIR/$tool-$tag-$run.out err=$WORKDIR/$tool-$tag-$run.err tv=$WORKDIR/$tool-$tag-$run.time
    local cmd
    if [ "$tool" = weir ]; then
        cmd=("$WEIR" show --format "$format" target.bst)
    else
        rm -rf "$WORKDIR/bst-cache-$tag-$run"
        cmd=(env XDG_CACHE_HOME="$WORKDIR/bst-cache-$tag-$run" "$BST" --no-colors show --format "$format" target.bst)
    fi
    # Timed by a small runner around fork/exec/wait4 (as /usr/bin/time does,
    # but wall time to the microsecond: time -v rounds it to centiseconds,
    # a 5% step at 0.2 s). Writes "wall cpu rss" (s, s, MiB) to $tv.
    if ! (cd "$proj" && python3 -c "$RUNNER" "$tv" "${cmd[@]}" >"$out" 2>"$err"); then
        log "$tool failed on $tag (run $run): $(tail -1 "$err")"
        echo FAIL
        return
    fi
    cat "$tv"
}

# The runner measure() times each command with: wall clock around the
# child's life, user + system CPU and peak RSS from wait4's rusage.
RUNNER='
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(out, "w") as f:
    f.write("%.4f %.3f %.0f\n" % (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024))
sys.exit(os.waitstatus_to_exitcode(status))
'

# medians: the median of each column of the "wall cpu rss" lines on stdin.
medians() {
    python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
print("%.3f %.2f %d" % tuple(statistics.median(r[i] for r in rows) for i in range(3)))'
}

# median_of TOOLS PROJ TAG FORMAT: for each tool of TOOLS ("weir" or
# "weir bst"), the median wall time, CPU time and peak RSS over $RUNS runs,
# one line per tool. With two tools the runs alternate (weir, bst, weir,
# ...), so that a slow spell of a shared host falls on both tools instead
# of on all the runs of one.
median_of() {
    local tools=$1 proj=$2 tag=$3 format=$4 r tool line
    declare -A rows=()
    for tool in $tools; do
        for r in $(seq 1 "$WARMUP"); do
            line=$(measure "$tool" "$proj" "$tag" "warmup-$r" "$format")
            [ "$line" = FAIL ] && rows[$tool]=FAIL
        done
    done
    for r in $(seq 1 "$RUNS"); do
        for tool in $tools; do
            [ "${rows[$tool]:-}" = FAIL ] && continue
            line=$(measure "$tool" "$proj" "$tag" "$r" "$format")
            if [ "$line" = FAIL ]; then rows[$tool]=FAIL; else rows[$tool]+="$line"$'\n'; fi
        done
    done
    for tool in $tools; do
        if [ "${rows[$tool]}" = FAIL ]; then echo "FAIL - -"; else printf '%s' "${rows[$tool]}" | medians; fi
    done
}

# ratio A B FORMAT: A / B, or "-" when either is not a positive number.
ratio() {
    awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf f, a / b; else print "-" }'
}

# --- the runs ----------------------------------------------------------------
main() {
    local jobs=() job shape n mode fmt format tag proj mismatches=0
    local w_wall w_cpu w_rss b_wall b_cpu b_rss same bst_note load
    for n in $SIZES; do jobs+=("layered $n bst name"); done
    for n in $DENSE_SIZES; do jobs+=("dense $n bst name"); done
    if [ "$HUGE" -eq 1 ]; then jobs+=("layered 100000 weir-only name"); fi
    for n in $KEY_SIZES; do jobs+=("layered $n bst keys"); done
    for n in $KEY_DENSE_SIZES; do jobs+=("dense $n bst keys"); done

    local results=$WORKDIR/results.tsv
    printf 'format\tshape\tN\tweir_wall_s\tweir_cpu_s\tweir_us_per_elt\tweir_rss_MiB\tbst_wall_s\tbst_cpu_s\tbst_rss_MiB\tspeedup_wall\tspeedup_cpu\tmemory_ratio\tsame_output\tload\n' >"$results"
    for job in "${jobs[@]}"; do
        read -r shape n mode fmt <<<"$job"
        format=$(format_of "$fmt")
        tag=$shape-$n-$fmt
        proj=$WORKDIR/proj-$shape-$n
        if [ ! -f "$proj/.generated" ]; then
            log "generating $shape-$n"
            python3 "$GEN" --elements "$n" --seed 1 --shape "$shape" --out "$proj" --force >"$WORKDIR/gen-$shape-$n.json"
            touch "$proj/.generated"
            sync  # the generator's writeback is not timed with the first tool
        fi

        load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo -)
        b_wall=-; b_cpu=-; b_rss=-; same=-; bst_note=
        if [ "$WEIR_ONLY" -eq 1 ] || [ "$mode" != bst ]; then
            bst_note="(weir only)"
        elif [ "$BST_MAX" -ne 0 ] && [ "$n" -gt "$BST_MAX" ]; then
            bst_note="(skipped: --bst-max $BST_MAX)"
        fi
        if [ -n "$bst_note" ]; then
            log "weir show --format '$format' on $shape-$n"
            read -r w_wall w_cpu w_rss <<<"$(median_of weir "$proj" "$tag" "$format")"
        else
            log "weir show and bst show --format '$format' on $shape-$n (runs alternate)"
            { read -r w_wall w_cpu w_rss; read -r b_wall b_cpu b_rss; } < <(median_of "weir bst" "$proj" "$tag" "$format")
            if [ "$w_wall" != FAIL ] && [ "$b_wall" != FAIL ]; then
                if cmp -s "$WORKDIR/weir-$tag-1.out" "$WORKDIR/bst-$tag-1.out"; then
                    same=yes
                else
                    same=NO
                    mismatches=$((mismatches + 1))
                    log "outputs differ on $tag: diff $WORKDIR/weir-$tag-1.out $WORKDIR/bst-$tag-1.out"
                fi
            fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fmt" "$shape" "$n" \
            "$w_wall" "$w_cpu" "$(ratio "$w_wall" "$n" '%.6f' | awk '{ print ($1 == "-") ? "-" : sprintf("%.0f", $1 * 1000000) }')" "$w_rss" \
            "${bst_note:-$b_wall}" "$b_cpu" "$b_rss" \
            "$(ratio "$b_wall" "$w_wall" '%.1fx')" "$(ratio "$b_cpu" "$w_cpu" '%.1fx')" "$(ratio "$w_rss" "$b_rss" '%.3f')" \
            "$same" "$load" >>"$results"
    done

    echo
    echo "weir show vs bst show target.bst, format name = '%{name}', keys = '%{name} %{full-key}';"
    echo "median of $RUNS run(s) after $WARMUP untimed warm-up run(s); weir and bst runs alternate."
    echo "speedup = bst / weir (wall and user+sys CPU); memory_ratio = weir peak RSS / bst peak RSS;"
    echo "weir_us_per_elt (wall) stays flat across N when loading is linear. On a shared machine"
    echo "wall times include waiting for a core: the CPU columns are the steadier comparison."
    echo "load = the machine's 1-minute load average before weir ran. weir reads and parses"
    echo "element files on one helper thread per further core (WEIR_LOAD_THREADS=N sets N, 0 none)."
    column -t -s $'\t' "$results" 2>/dev/null || cat "$results"
    log "workdir (projects, outputs, timings): $WORKDIR"
    if [ "$mismatches" -gt 0 ]; then
        echo "FAIL: $mismatches output(s) differ between weir and bst" >&2
        return 1
    fi
}

main
