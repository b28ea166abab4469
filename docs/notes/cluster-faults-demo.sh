#!/usr/bin/env bash
# The cluster faults of docs/notes/cluster-faults.md, reproduced on one checkout with the tiny
# preset (embedded corpus): run it from a checkout's root, with its venv active, and compare the
# output of two checkouts. Usage: bash docs/notes/cluster-faults-demo.sh WORKDIR
set -u
work=${1:?usage: cluster-faults-demo.sh WORKDIR}
rm -rf "$work" && mkdir -p "$work/tmp"
export TMPDIR="$work/tmp" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
short=(--set steps=2 --set val_interval=1 --set eval_max_sentences=4 --no-wandb)
repro() { python -m reproduce "$@"; }
# rc, the lines that say what happened, and the last line
said='damaged|rebuil|cut short|Traceback|Error|error|taking over|removing|removed|already|waiting|skipp|held|in use|reused|ok BLEU'
tail_of() {
    "$@" > "$work/out" 2>&1; echo "rc=$?"
    { grep -E -i "$said" "$work/out"; tail -n 1 "$work/out"; } | grep -v "^\s*$" | uniq | cut -c1-400
}
leftovers() { (cd "$1" && find . -mindepth 1 -maxdepth 2 -name '.*' | sort); ls -A "$TMPDIR"; }
found() { [ -n "$(find "$1" "$TMPDIR" -mindepth 1 -maxdepth 4 -name "$2" 2>/dev/null | head -n 1)" ]; }

echo "### 1. prepare killed with kill -9 while it stages, then run again"
for point in '.spm-train-*' 'train.txt' 'tmp*' '.bin-*' 'train.src.ids.npy' 'bin-*.lock'; do
    r="$work/kill"; rm -rf "$r"
    python -m reproduce prepare --scale tiny --results-dir "$r" --no-wandb > /dev/null 2>&1 &
    pid=$!  # python's own pid, so that kill -9 reaches it
    for _ in $(seq 6000); do  # up to about 2 min
        found "$r" "$point" && break
        kill -0 $pid 2>/dev/null || break  # finished before it got there
        sleep 0.01
    done
    if ! kill -9 $pid 2>/dev/null; then
        wait $pid; echo "$point: prepare finished without making it"; continue
    fi
    wait $pid 2>/dev/null
    echo "killed at $point; left: $(leftovers "$r/.cache" | tr '\n' ' ')"
    repro prepare --scale tiny --results-dir "$r" --no-wandb > /dev/null 2>&1
    echo "after a rerun, left: $(leftovers "$r/.cache" | tr '\n' ' ')"
    rm -rf "${TMPDIR:?}"/*
done

echo "### 2. a damaged cache file: the vocabulary cut short, then a length index cut short"
r="$work/damaged"
repro prepare --scale tiny --results-dir "$r" --no-wandb > /dev/null 2>&1
model=$(find "$r/.cache" -name '*.model' | head -n 1)
truncate -s 1000 "$model"
tail_of repro run table2/A/warmup/seed0 --scale tiny --results-dir "$r" "${short[@]}"
rm -rf "$r"; repro prepare --scale tiny --results-dir "$r" --no-wandb > /dev/null 2>&1
index=$(find "$r/.cache" -name '*keep*.npy' | head -n 1)
truncate -s 200 "$index"
tail_of repro run table2/A/warmup/seed0 --scale tiny --results-dir "$r" "${short[@]}"

echo "### 3. the results folder locked by a process on another host whose Slurm job is gone"
r="$work/lock"; mkdir -p "$r"
printf '{"host": "node-lost", "pid": 4242, "start_time": 1, "slurm_job_id": "424242"}' \
    > "$r/.lock"
tail_of repro table2 --rows A --scale tiny --results-dir "$r" --tables-dir "$work/t3" "${short[@]}"

echo "### 4. the cache deleted and built again: are the finished cells kept?"
r="$work/rebuild"
repro run table2/A/warmup/seed0 --scale tiny --results-dir "$r" "${short[@]}" > /dev/null 2>&1
before=$(sha256sum "$r/table2/A/warmup/seed0/metrics.jsonl")
rm -rf "$r/.cache"
tail_of repro run table2/A/warmup/seed0 --scale tiny --results-dir "$r" "${short[@]}"
[ "$(sha256sum "$r/table2/A/warmup/seed0/metrics.jsonl")" = "$before" ] \
    && echo "the cell was kept (metrics.jsonl unchanged)" || echo "the cell was trained again"

echo "### 5. a table run with --wait-lock meets a cell that 'run' holds"
r="$work/held"
held=(--set steps=300 --set val_interval=100 --set eval_max_sentences=4 --no-wandb)
repro prepare --scale tiny --results-dir "$r" --no-wandb > /dev/null 2>&1
repro run table2/A/warmup/seed0 --scale tiny --results-dir "$r" "${held[@]}" > /dev/null 2>&1 &
pid=$!
for _ in $(seq 2400); do [ -e "$r/table2/A/warmup/seed0/.lock" ] && break; sleep 0.05; done
tail_of repro table2 --rows A --scale tiny --results-dir "$r" --tables-dir "$work/t5" \
    --wait-lock "${held[@]}"
wait $pid
grep -h -i -E "waiting|held|in use" "$r"/table2/A/*/seed0/run.log | cut -c1-300

echo "### 7. --set values that are not numbers in range"
for bad in lr_scale=1e999 blowup_factor=1e999 val_interval=0 torch_threads=-1; do
    echo "--set $bad:"
    tail_of repro table2 --scale tiny --results-dir "$work/bad" --tables-dir "$work/t7" \
        --set "$bad" --no-wandb
done
