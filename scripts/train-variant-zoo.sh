#!/usr/bin/env bash
# Train (or resume) the whole variant zoo in the background: two workers, one thread each, with
# disjoint model lists balanced by their training time. Logs: $CACHE/zoo-training/worker-*.log.
# Stop with `pkill -f vitphase_lib.cli` (each run resumes from its last checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${VITPHASE_CACHE:-$HOME/.cache/vitphase}
mkdir -p "$CACHE/zoo-training"
workers=(
    "mini-s-pe-none mini-s-pe-weak mini-s-pe-matched mini-s-pe-strong mini-s-seed1 mini-s-seed2 mini-s-d24 mini-s-d18"
    "mini-s-hub-removed mini-s-hub-forced mini-s-avg mini-s-d3 mini-s-mlp-shared mini-b-avg mini-s-mlp-half mini-s-d6"
)
for i in "${!workers[@]}"; do
    OMP_NUM_THREADS=1 nohup .venv/bin/python -m vitphase_lib.cli zoo train --quiet \
        --model ${workers[$i]} >> "$CACHE/zoo-training/worker-$i.log" 2>&1 &
    echo "worker $i (pid $!): ${workers[$i]}"
done
