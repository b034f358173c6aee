#!/usr/bin/env bash
# The GPU check, ready for the first machine with a CUDA GPU (none has been available to this project): about 8
# minutes on one GPU. Three parts, then one summary table:
#   1. the CUDA-marked tests (the tests skipped with "needs a CUDA device" everywhere else);
#   2. one training step of every registered model under fp32, fp16 (GradScaler) and bf16 autocast, channels_last
#      (benchmarks/gpu_steps.py);
#   3. cnnlab's fast recipe against the airbench package's airbench94 on the same GPU, same data, fp16
#      (benchmarks/bench_peers.py --device cuda), with 94% among the targets.
# Run from the repository root:   bash benchmarks/gpu_check.sh      (PYTHON=... to choose the interpreter;
# DATA_ROOT=... where shared/data is not beside the checkout; LOGS=... where each part's full output is kept)
# Exits 2 with one line when torch sees no CUDA GPU; otherwise 0 if every part passed, 1 if one failed.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
DATA_ROOT="${DATA_ROOT:-$PWD/../shared/data}"
LOGS="${LOGS:-$(mktemp -d -t gpu-check-XXXXXX)}"
mkdir -p "$LOGS"

if ! gpu=$("$PY" -c 'import torch, sys; sys.exit(1) if not torch.cuda.is_available() else print(torch.cuda.get_device_name(0))' 2>/dev/null); then
    echo "gpu_check: no CUDA GPU visible to torch ($("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA build", torch.version.cuda)' 2>&1 | tail -1)); run it on a machine with one" >&2
    exit 2
fi
echo "gpu_check on $gpu; logs in $LOGS"

declare -a ROWS
status=0
part() {  # part NAME LIMIT_S COMMAND...: run one part under a time limit, keep its log, add a summary row
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS rc
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || status=1
    ROWS+=("| $name | $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', time limit'))") | $((SECONDS - t0)) s | $(grep -E "$RESULT_LINE" "$LOGS/$name.log" | tail -1 | tr '|' '/') |")
}

# 1. every test guarded by skipif(not torch.cuda.is_available()), found by reading the tests
cuda_tests=$(grep -n -A1 "skipif(not torch.cuda.is_available()" tests/*.py \
             | sed -n 's/^\(tests\/[^-]*\.py\)-[0-9]*-def \(test_[A-Za-z0-9_]*\).*/\1::\2/p')
RESULT_LINE="passed|failed|error"
if [ -n "$cuda_tests" ]; then
    # shellcheck disable=SC2086
    part cuda-tests 120 "$PY" -m pytest -q -p no:cacheprovider -rs $cuda_tests
else
    ROWS+=("| cuda-tests | none found | 0 s | |")
fi

# 2. one step per model and precision
RESULT_LINE="models trained a step"
part model-steps 120 "$PY" benchmarks/gpu_steps.py --device cuda --batch 32

# 3. the fast recipe against airbench94 on this GPU
RESULT_LINE="^cnnlab / airbench94"
part peers 300 bash -c "cd benchmarks && '$PY' bench_peers.py --device cuda --data-root '$DATA_ROOT' \
    --out '$LOGS/runs' --targets 0.85,0.9,0.93,0.94"
grep -E '^\| (peer|airbench|cnnlab|---)' "$LOGS/peers.log" > "$LOGS/peers-table.txt" 2>/dev/null

echo
echo "gpu_check on $gpu"
echo "| part | result | time | summary |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if [ -s "$LOGS/peers-table.txt" ]; then
    echo
    cat "$LOGS/peers-table.txt"
fi
exit $status
