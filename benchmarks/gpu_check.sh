#!/usr/bin/env bash
# The GPU check: the tests marked `gpu` (they skip without CUDA) and the speed table on one GPU,
# in under 8 minutes. Run it on a lent GPU machine from the repository root:
#     bash benchmarks/gpu_check.sh            # writes $OUT (or benchmarks/results/gpu) with the logs
# It installs nothing beyond `make setup` (the project's own dependencies; torch is the machine's).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
PY="${PY:-python3}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} | tee "$OUT/device.txt"
export DEEPZEN_DATA="${DEEPZEN_DATA:-$(cd ../shared/data 2>/dev/null && pwd)}"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tail -30 | tee "$OUT/gpu_tests.txt"
# One epoch of MNIST per framework: MLP and LeNet-5 (hand loop, deepzen fit, Sequential vs Functional).
timeout 150 "$PY" benchmarks/training_speed.py --repeats 1 \
  --frameworks hand,hand_fused,deepzen,deepzen_sequential,deepzen_functional 2>&1 | tail -20 | tee "$OUT/training_speed.txt"
# ResNet-20 on MNIST: time of a fixed number of training steps.
timeout 60 "$PY" benchmarks/mnist_resnet.py --estimate 200 --run-dir "$OUT/resnet" 2>&1 | tail -5 | tee "$OUT/resnet20.txt"
# The 2-layer character LSTM: ms per training step against bare nn.LSTM.
timeout 60 "$PY" benchmarks/lstm_speed.py --repeats 3 --steps 5 --no-keras 2>&1 | tail -12 | tee "$OUT/char_lstm.txt"
