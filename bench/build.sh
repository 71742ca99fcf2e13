#!/usr/bin/env bash
# Time `weir build` with the embedded worker (issue 7, "Speed"): a generated
# project of trivial `manual` elements is built cold, then again (a no-op:
# everything is cached). A benchmark, not a test.
#
# Usage: bench/build.sh [--sizes "2000"] [--noop-sizes "10000"]
#                       [--builders N] [--workdir DIR]
#
#   --sizes LIST       projects built cold and then again (default "2000")
#   --noop-sizes LIST  projects whose no-op build is timed (they are built
#                      cold first, that time is reported too; default "10000")
#   --builders N       weir build --builders (default 1: one action at a time,
#                      so that wall - sum(run) is the overhead; see below)
#   --workdir DIR      scratch directory (default: a fresh mktemp -d, kept)
#
# Environment:
#   CARGO_TARGET_DIR   cargo target directory for the release build of weir
#   WEIR               use this weir executable instead of building one
#   BUSYBOX            a statically linked busybox (default /bin/busybox)
#
# The project: `base.bst` imports busybox (sh, mkdir, echo), and elements
# e0..e(N-1) are `manual` elements in layers of 100, each build-depending on
# base.bst and on two elements of the layer below; each runs one
# install-command writing one file. `all.bst` is a stack of every element.
# (shared/bench/gen_project.py makes projects of every kind with remote
# sources, which `weir build` cannot stage yet, hence this generator.)
#
# Figures: wall time of the whole command (load, keys, embedded worker
# start-up, scheduling, uploads, execution, stop), the sum of the actions'
# run times on the worker (ExecutedActionMetadata execution_start to
# execution_completed, from the `--json` `executed` events), the sum of the
# worker's whole handling of each action (worker_start to
# worker_completed: staging inputs, running, capturing outputs), and the
# scheduler's overhead = wall - sum(run), split into the worker's staging,
# output capture and other handling, the rest of each Execute call as the
# scheduler measures it (queueing, action cache, gRPC), and the time outside
# Execute calls (with --builders 1: planning, uploads, artifact records).
#
# --builders 1 by default: one action at a time, so that wall - sum(run) is
# the overhead. The namespace sandbox starts each command with one
# clone(CLONE_VM|CLONE_VFORK) (no forked copy of the process that could hold
# another action's executable open), so more builders are safe too.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZES="2000"
NOOP_SIZES="10000"
BUILDERS=1
WORKDIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES=$2; shift 2 ;;
        --noop-sizes) NOOP_SIZES=$2; shift 2 ;;
        --builders) BUILDERS=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/weir-build-bench.XXXXXX)}
mkdir -p "$WORKDIR"
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "no busybox at $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }

if [ -z "${WEIR:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p weir-scheduler)
    WEIR=${CARGO_TARGET_DIR:-$ROOT/target}/release/weir
fi
SLOTS=$(nproc)

# generate DIR N: the project described above.
generate() {
    python3 - "$1" "$2" "$BUSYBOX" <<'PY'
import os, shutil, sys
out, n, busybox = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(os.path.join(out, "elements"), exist_ok=True)
bindir = os.path.join(out, "files/base/bin")
os.makedirs(bindir, exist_ok=True)
shutil.copy(busybox, os.path.join(bindir, "busybox"))
for applet in ("sh", "mkdir", "echo"):
    link = os.path.join(bindir, applet)
    if not os.path.islink(link):
        os.symlink("busybox", link)
with open(os.path.join(out, "project.conf"), "w") as f:
    f.write("name: buildbench\nmin-version: 2.0\nelement-path: elements\n")
def write(name, text):
    with open(os.path.join(out, "elements", name), "w") as f:
        f.write(text)
write("base.bst", "kind: import\nsources:\n- kind: local\n  path: files/base\n")
layer = 100
for i in range(n):
    deps = ["base.bst"]
    below = (i // layer - 1) * layer
    if below >= 0:
        deps += [f"e{below + (i * 7) % layer}.bst", f"e{below + (i * 13 + 1) % layer}.bst"]
    deps = list(dict.fromkeys(deps))
    write(f"e{i}.bst", "kind: manual\nbuild-depends:\n" + "".join(f"- {d}\n" for d in deps)
          + "config:\n  install-commands:\n"
          + f"  - mkdir -p %{{install-root}}/share/e{i} && echo {i} > %{{install-root}}/share/e{i}/id\n")
write("all.bst", "kind: stack\ndepends:\n" + "".join(f"- e{i}.bst\n" for i in range(n)))
PY
}

# build DIR CACHE LOG: runs weir build, prints the wall time in seconds and
# "failed" when the build did not succeed (its summary is in LOG).
build() {
    local start end status=ok
    start=$(date +%s.%N)
    if ! (cd "$1" && "$WEIR" build --json --on-error continue --builders "$BUILDERS" --cache-dir "$2" all.bst >"$3" 2>"$3.stderr"); then
        status=failed
        grep '"event":"failed"' "$3" | head -3 >&2 || true
    fi
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.2f}')"
    [ "$status" = ok ] || echo failed
}

# summary LOG WALL: the figures of one cold build.
summary() {
    python3 - "$1" "$2" "$SLOTS" <<'PY'
import json, sys
log, wall, slots = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
run = worker = inputs = outputs = execute = 0.0
executed = built = cached = 0
for line in open(log):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "executed":
        executed += 1
        run += e["run_millis"] / 1000
        worker += e["worker_millis"] / 1000
        inputs += e.get("input_millis", 0) / 1000
        outputs += e.get("output_millis", 0) / 1000
        execute += e.get("execute_millis", 0) / 1000
    elif e.get("event") == "summary":
        built, cached = e["built"], e["cached"]
n = max(executed, 1)
ms = lambda seconds: f"{seconds / n * 1000:.2f} ms"
print(f"  built {built}, cached {cached}, actions {executed}")
print(f"  wall {wall:.2f} s; sum of action run times {run:.2f} s; sum of worker handling {worker:.2f} s"
      f" (inputs {inputs:.2f} s, outputs {outputs:.2f} s); sum of Execute calls {execute:.2f} s")
print(f"  overhead = wall - sum(run) = {wall - run:.2f} s = {ms(wall - run)} per action")
print(f"    per action: worker staging {ms(inputs)}, outputs {ms(outputs)}, rest of the worker's handling"
      f" {ms(worker - run - inputs - outputs)}; Execute call beyond the worker {ms(execute - worker)};"
      f" outside Execute calls {ms(wall - execute)}")
print(f"  (with {slots} worker slots: wall - sum(run)/{slots} = {wall - run / slots:.2f} s)")
PY
}

echo "weir: $WEIR; builders $BUILDERS; worker slots $SLOTS; workdir $WORKDIR"
for n in $SIZES $NOOP_SIZES; do
    dir=$WORKDIR/project-$n
    cache=$WORKDIR/cache-$n
    rm -rf "$dir" "$cache"
    generate "$dir" "$n"
    echo "== $n manual elements (+ base.bst, all.bst)"
    result=$(build "$dir" "$cache" "$WORKDIR/cold-$n.json")
    wall=$(echo "$result" | head -1)
    echo " cold build:"
    summary "$WORKDIR/cold-$n.json" "$wall"
    if echo "$result" | grep -q failed; then
        # An element failed: finish the build so that the no-op figure
        # means something.
        echo " cold build had failures (figures above are partial); building the rest"
        result=$(build "$dir" "$cache" "$WORKDIR/rest-$n.json")
        summary "$WORKDIR/rest-$n.json" "$(echo "$result" | head -1)"
    fi
    result=$(build "$dir" "$cache" "$WORKDIR/noop-$n.json")
    built=$(grep -c '"event":"finished"' "$WORKDIR/noop-$n.json" || true)
    echo " no-op build: wall $(echo "$result" | head -1) s (built $built)"
done
