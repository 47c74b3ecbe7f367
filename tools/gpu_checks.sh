#!/usr/bin/env bash
# Every check that needs a CUDA GPU, then the GPU benchmarks; run from the repo root:
#
#     tools/gpu_checks.sh OUTDIR [GOLDEN_DIR] [STEPS]
#
# GOLDEN_DIR defaults to ../shared/golden (the parity data; make_checkpoint.py comes from it).
# STEPS (default "env tests ops bench256 bench1024 fast1024 train") picks the parts:
#   env    the machine, the driver, torch and nvcc versions
#   tests  tests/test_ops_cuda.py + tests/test_parity.py + tests/test_io.py (kernels vs reference,
#          CUDA parity, the asynchronous host copy of the jobs)
#   ops    tools/benchmark_ops.py, fp32 and fp16 (our kernels vs the reference path)
#   bench256   tools/benchmark.py at 256 px, fp32, with the official-loop rows
#   bench1024  the same at 1024 px
#   fast1024   1024 px in tf32, bf16, fp16 and fp16 --compile
#   train  60 s of 256-px GAN training for the kimg/s figure
# Writes OUTDIR/gpu_checks.log (everything) and OUTDIR/bench.jsonl (one JSON line per benchmark).
# Each step has its own time limit and a failing step does not stop the next one.
set -u
out=${1:?usage: tools/gpu_checks.sh OUTDIR [GOLDEN_DIR] [STEPS]}
golden=$(realpath "${2:-../shared/golden}")
steps=${3:-env tests ops bench256 bench1024 fast1024 train}
py=${PYTHON:-python3}
mkdir -p "$out"
out=$(realpath "$out")
log=$out/gpu_checks.log
work=${TMPDIR:-/tmp}/blendgan-gpu-checks
mkdir -p "$work"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 BLENDGAN_GOLDEN=$golden
export BLENDGAN_CACHE_DIR=${BLENDGAN_CACHE_DIR:-$work/ops-cache}

step() {  # step SECONDS TITLE COMMAND...
    local limit=$1 title=$2; shift 2
    local t0=$SECONDS
    echo "=== $title" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    echo "=== $title: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$log"
}

checkpoint() {  # checkpoint SIZE SEED -> prints the folder
    local dir=$work/ck$1
    [ -s "$dir/psp_encoder.pt" ] || "$py" "$golden/make_checkpoint.py" --size "$1" --seed "$2" --out "$dir" >/dev/null
    echo "$dir"
}

bench() {  # bench SIZE SECONDS ARGS...
    local size=$1 limit=$2; shift 2
    local ck
    ck=$(checkpoint "$size" $([ "$size" = 256 ] && echo 0 || echo 3))
    step "$limit" "benchmark $size $*" "$py" tools/benchmark.py --ckpt "$ck/blendgan.pt" --psp "$ck/psp_encoder.pt" \
        --device cuda --json-out "$out/bench.jsonl" "$@"
}

for s in $steps; do
    case $s in
    env)
        step 60 "environment" bash -c "nvidia-smi; $py -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'; nvcc --version | tail -2; nproc"
        ;;
    tests)
        step 420 "CUDA tests" "$py" -m pytest -q -rs -s -p no:cacheprovider tests/test_ops_cuda.py tests/test_parity.py tests/test_io.py
        ;;
    ops)
        step 120 "op benchmark fp32" "$py" tools/benchmark_ops.py --json-out "$out/bench.jsonl"
        step 120 "op benchmark fp16" "$py" tools/benchmark_ops.py --dtype fp16 --json-out "$out/bench.jsonl"
        ;;
    bench256)
        bench 256 120 --batch 16 --pairs 64 --faces 8 --styles 8 --frames 64 --baseline --repeat 2
        ;;
    bench1024)
        bench 1024 150 --batch 8 --pairs 16 --faces 4 --styles 4 --frames 16 --baseline --repeat 2
        ;;
    fast1024)
        bench 1024 90 --batch 8 --pairs 16 --faces 4 --styles 4 --frames 16 --precision tf32 --repeat 2
        bench 1024 90 --batch 8 --pairs 16 --faces 4 --styles 4 --frames 16 --precision bf16 --repeat 2
        bench 1024 90 --batch 8 --pairs 16 --faces 4 --styles 4 --frames 16 --precision fp16 --repeat 2
        bench 1024 150 --batch 8 --pairs 16 --faces 4 --styles 4 --frames 16 --precision fp16 --compile --repeat 2
        ;;
    train)
        ck=$(checkpoint 256 0)
        rm -rf "$work/train"
        step 150 "training 256 px" "$py" -m blendgan train --faces test_imgs/face_imgs --styles test_imgs/style_imgs \
            --init "$ck/blendgan.pt" --outdir "$work/train" --size 256 --batch 8 --kimg 2 --device cuda \
            --log-every 20 --sample-every 0 --tensorboard off --quiet
        tail -n 3 "$work/train/log.jsonl" 2>&1 | tee -a "$log"
        ;;
    *) echo "unknown step $s" | tee -a "$log" ;;
    esac
done
