#!/usr/bin/env bash
# One short run of every CUDA path, for a session that is lent a GPU machine.
# It installs nothing beyond the repo: bring torch with CUDA and the deps first.
#   bash scripts/gpu_check.sh            # ~3 minutes on one H200 before the envpool rows (not yet timed there)
#   BENCH_JSON=out/bench_cuda.json bash scripts/gpu_check.sh   # also keep the bench figures
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/model/test_cuda_graph.py
python3 scripts/bench.py --device cuda --only train model pixels --envs 16 64 --train-steps 40 ${BENCH_JSON:+--json "$BENCH_JSON"}
# Issue 12: envpool on the machine's CPU cores with the model on the GPU, 16 to 256 envs (needs `pip install envpool`;
# the envpool rows are skipped without it). Targets: 256 envs >= 30,000 env-steps/s, cached model step <= 1 ms.
python3 scripts/bench.py --device cuda --only model eval --envs 16 64 256 --recompute-envs 16 --backends sync envpool \
    ${BENCH_JSON:+--json "${BENCH_JSON%.json}_envpool.json"}
