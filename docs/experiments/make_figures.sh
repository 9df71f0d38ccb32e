#!/usr/bin/env bash
# Runs the experiments with their default settings on MNIST, one after the other (never two at
# once: they would share the cores and each other's timings), copies each run's pictures and its
# report to docs/experiments/ (NAME.png is the summary picture the README shows, NAME.md the run's
# report.md, whose picture links work there too), and prints one Markdown row per experiment for
# the timing table of docs/experiments/README.md: the command, wall time, CPU time (user +
# system), peak memory, the 1-minute load average before and after, and the date.
#
# Usage, from the repository root with the virtual environment active:
#   docs/experiments/make_figures.sh [RUNS_DIR [NAME ...]]
# RUNS_DIR (default runs/experiments) receives a run folder per experiment and timings.md; NAME
# defaults to all seven. MNIST is read from $DEEPZEN_DATA (default: ../shared/data when present);
# dataset=mnist makes a missing MNIST an error instead of a silent fallback to the 8x8 digits.
#
# Timings are only worth recording on an otherwise idle machine: torch's two intra-op threads wait for
# each other at every operation, so a third busy process slows these small networks several-fold.
# Before each experiment the script waits (up to MAX_WAIT seconds, default 1800) until the 1-minute
# load average is below QUIET_LOAD (default 1.0).
set -euo pipefail

runs=${1:-runs/experiments}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(initialization activations optimizers regularization batchnorm residual augmentation)
fi
if [ -z "${DEEPZEN_DATA:-}" ] && [ -d ../shared/data ]; then
  DEEPZEN_DATA="$(cd ../shared/data && pwd)"
  export DEEPZEN_DATA
fi
figures="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$runs"

load() { cut -d' ' -f1 /proc/loadavg; }
quiet() { awk -v limit="${QUIET_LOAD:-1.0}" '{ exit !($1 < limit) }' /proc/loadavg; }

for name in "${names[@]}"; do
  waited=0
  until quiet || [ "$waited" -ge "${MAX_WAIT:-1800}" ]; do
    sleep 15
    waited=$((waited + 15))
  done
  before=$(load)
  /usr/bin/time -f "%e %U %S %M" -o "$runs/$name.time" \
    deepzen experiment "$name" --set dataset=mnist --run-dir "$runs/$name"
  after=$(load)
  cp "$runs/$name"/*.png "$figures/"
  cp "$runs/$name/report.md" "$figures/$name.md"
  awk -v name="$name" -v before="$before" -v after="$after" -v day="$(date +%Y-%m-%d)" \
    '{ printf "| `deepzen experiment %s --set dataset=mnist` | %.0f s (%.1f min) | %.0f s | %.1f GB | %s | %s | %s |\n",
              name, $1, $1 / 60, $2 + $3, $4 / 1048576, before, after, day }' "$runs/$name.time" \
    | tee -a "$runs/timings.md"
done
