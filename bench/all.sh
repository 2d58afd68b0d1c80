#!/usr/bin/env bash
# Every benchmark, then one table: one line per figure (figure, ours, baseline, ratio, target,
# OK/MISSED). On the CPU by default; `--device cuda` on a GPU machine (bench/gpu_check.sh calls
# it so). `--quick` leaves out the training benchmarks (most of the time: about an hour on 2
# CPU cores with them, 15 minutes without). Logs go to $OUT or /tmp/bench_all.
#
#   bash bench/all.sh [--device cpu|cuda] [--quick]
set -uo pipefail
cd "$(dirname "$0")"
DEVICE=cpu
QUICK=0
while [ $# -gt 0 ]; do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        *) echo "usage: bash bench/all.sh [--device cpu|cuda] [--quick]" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-$(command -v python3)}
[ -x ../.venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=../.venv/bin/python
LOGS=${OUT:-/tmp/bench_all}
mkdir -p "$LOGS"
export PTCLI_BENCH_TABLE="$LOGS/table.jsonl"
: > "$PTCLI_BENCH_TABLE"
FAILED=()

run() {  # run NAME TIMEOUT_S ARGS...: one benchmark, its log kept
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "== $name" >&2
    if ! timeout "$limit" "$PY" "$@" >"$LOGS/$name.log" 2>&1; then
        FAILED+=("$name (exit $?, see $LOGS/$name.log)")
    fi
    echo "   $((SECONDS - start)) s" >&2
}

run startup 120 startup.py --runs 5
run one-photo 180 one_photo.py --runs 5
run first-result 600 first_result.py --runs 3
run classify-throughput 300 classify_throughput.py --device "$DEVICE"
run text-throughput 300 text_throughput.py --device "$DEVICE"
run generate-throughput 600 generate_throughput.py --device "$DEVICE"
run detect-throughput 600 detect_throughput.py --device "$DEVICE"
run detect-slicing 600 detect_slicing.py --device "$DEVICE"
run export-latency 600 export_latency.py --device "$DEVICE"
run int8-agreement 900 int8_agreement.py
run serve-load 900 serve_load.py
run sr-tiling 900 sr_tiling.py
run attack-speed 600 attack_speed.py --device "$DEVICE"
run activation-overhead 900 activation_overhead.py --device "$DEVICE"
run train-throughput 600 train_throughput.py
if [ "$QUICK" = 0 ]; then
    run train-accuracy 1800 train_accuracy.py
    run text-accuracy 1800 text_accuracy.py --device "$DEVICE"
    run audio-accuracy 1800 audio_accuracy.py
    run detect-finetune 1800 detect_finetune.py --device "$DEVICE"
    run adversarial-training 1800 adversarial_training.py --device "$DEVICE"
    run gpt2-finetune 900 gpt2_finetune.py
    run sr-train 1800 sr_train.py --device "$DEVICE"
fi

"$PY" table.py "$PTCLI_BENCH_TABLE" "$DEVICE"
for failed in "${FAILED[@]}"; do echo "FAILED: $failed"; done
[ ${#FAILED[@]} -eq 0 ]
