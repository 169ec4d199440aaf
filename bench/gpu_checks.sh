#!/usr/bin/env bash
# Every GPU check and GPU figure of docs/BENCHMARKS.md in one run, for a machine with CUDA:
#
#     bash bench/gpu_checks.sh OUT_DIR [COCO_SIZED_IMAGES]
#
# The GPU tests, training speed of the paper's and the demo's shapes, the network's agreement
# with the CPU (fp32, bf16), and index builds of COCO-sized JPEGs (ResNet-50 K 256 at random
# weights, fp32 and bf16; the demo model) with their stage split. Each step writes into OUT_DIR
# as it ends, so a run cut short keeps what finished. About 6 minutes on one H200.
set -u
out=${1:-gpu-results}
images=${2:-2000}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
work=$(mktemp -d)
step() { echo "=== $* ($(date +%T))"; }

step machine
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc; } 2>&1 | tee "$out/machine.txt"

step GPU tests
$py -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$out/pytest_gpu.txt"

step training speed
$py bench/train_speed.py --preset paper-coco-r50 --batch-size 64 --device cuda --steps 10 \
    --warmup 3 --json "$out/train_r50.json" 2>&1 | tee "$out/train.txt"
$py bench/train_speed.py --preset demo --device cuda --steps 20 --warmup 5 \
    --json "$out/train_demo.json" 2>&1 | tee -a "$out/train.txt"

step network agreement with the CPU
$py bench/network_agreement.py --random-r50 --device cuda --runs eager eager:bf16 \
    --json "$out/agree_r50.json" 2>&1 | tee "$out/agree.txt"
$py bench/network_agreement.py --checkpoint assets/demo_encoder.pt --device cuda \
    --runs eager eager:bf16 --json "$out/agree_demo.json" 2>&1 | tee -a "$out/agree.txt"

step index builds
for precision in fp32 bf16; do
  $py bench/index_build.py --device cuda --coco-sized --mixed-sizes --coco-images "$images" \
      --batch-size 64 --workers 8 --precision $precision --stages --queries 50 \
      --work "$work" --json "$out/index_r50_$precision.json" 2>&1 | grep -v "it/s\|img/s]" \
      | tee -a "$out/index.txt"
  rm -rf "$work/index"
done
$py bench/index_build.py --device cuda --coco-sized --mixed-sizes --coco-images "$images" \
    --batch-size 64 --workers 8 --checkpoint assets/demo_encoder.pt --stages --queries 50 \
    --work "$work" --json "$out/index_demo_fp32.json" 2>&1 | grep -v "it/s\|img/s]" \
    | tee -a "$out/index.txt"
rm -rf "$work"
step done
