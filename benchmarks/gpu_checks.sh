#!/usr/bin/env bash
# The CUDA checks of issue 21 class 11, end to end in a few minutes on one CUDA machine (two GPUs
# for the DDP check, skipped with one): every precision on the GPU, 16-mixed on the stateful
# (manual optimization) path, bf16 regression, deterministic mingru, DDP on nccl, and checkpoints
# written on the GPU read where no GPU is (map_location). Run from the repository root:
#     bash benchmarks/gpu_checks.sh            # prints PASS/FAIL per check, exits 1 if any failed
set -u
OUT=$(mktemp -d /tmp/gpu_checks.XXXX)
COMMON=(debug=fast logger=none samples=0 hardware=gpu "callbacks.target_reached=null")
failed=0

status() { python -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['status'], m.get('steps'))" "$1/metrics.json"; }
check() {  # check NAME EXPECTED_STATUS -- train.py overrides...
    local name=$1 want=$2; shift 3
    python train.py "${COMMON[@]}" "$@" "hydra.run.dir=$OUT/$name" >"$OUT/$name.out" 2>&1
    local rc=$? got; got=$(status "$OUT/$name" 2>/dev/null || echo "no-record")
    if [[ $rc -eq 0 && $got == $want* ]]; then echo "PASS $name ($got)"; else
        echo "FAIL $name (exit $rc, $got): $OUT/$name.out"; tail -5 "$OUT/$name.out"; failed=1; fi
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA device"; exit 1; }
for p in 32-true 64-true bf16-mixed 16-mixed; do
    for t in echo_lag echo_lag_online arithmetic; do
        check "$p-lstm-$t" completed -- "hardware.precision=$p" "task=$t" model=lstm
    done
done
for c in rnn gru lru mingru; do check "bf16-$c" completed -- hardware.precision=bf16-mixed "model=$c" task=echo_lag_online; done

# 16-mixed stateful: the clip acts on the unscaled gradient (SGD lr 1, a clip that binds), and the
# CUDA variants of the CPU tests (the deterministic scan on CUDA, the GradScaler clip)
python -m pytest -q -n 0 -p no:cacheprovider tests/test_precision.py -k "clip or prefix_sum or cuda" || failed=1

# deterministic mingru: runs (CUDA's cumsum raises under deterministic algorithms) and repeats exactly
for i in 1 2; do check "det-mingru-$i" completed -- model=mingru trainer.deterministic=true task=echo_lag_online; done
python - "$OUT" <<'PY' || failed=1
import json, sys
from tests.run_helpers import comparable
a, b = (comparable(json.load(open(f"{sys.argv[1]}/det-mingru-{i}/metrics.json"))) for i in (1, 2))
print("PASS det-mingru repeats exactly" if a == b else f"FAIL det-mingru differs: {a} vs {b}")
sys.exit(a != b)
PY

# checkpoints written on the GPU load where there is none (every reader maps to the CPU)
for cmd in "eval.py $OUT/32-true-lstm-echo_lag" "predict.py $OUT/32-true-lstm-echo_lag 4 8 15 16 23"; do
    # shellcheck disable=SC2086 # the command's words
    if CUDA_VISIBLE_DEVICES= python $cmd >"$OUT/cpu-read.out" 2>&1; then echo "PASS ${cmd%% *} without a GPU"
    else echo "FAIL ${cmd%% *} without a GPU"; tail -5 "$OUT/cpu-read.out"; failed=1; fi
done

# DDP on nccl, two GPUs: each rank its own GPU, rank 0's record
if [[ $(nvidia-smi -L | wc -l) -ge 2 ]]; then
    check ddp-gpu completed -- hardware=ddp hardware.accelerator=gpu hardware.devices=2 task=echo_lag_online
    python -m pytest -q -n 0 -p no:cacheprovider tests/test_ddp.py -k mean_over_every_rank || failed=1
else
    echo "SKIP ddp-gpu (one GPU)"
fi
echo "outputs: $OUT"; exit $failed
