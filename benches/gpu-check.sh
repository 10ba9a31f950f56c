#!/usr/bin/env bash
# The LibTorch CUDA check, run on a GPU host in one go:
#   1. train, score and demo on cuda:0 through the CLI, with the GPU scores
#      compared against the same artifact scored on flex and on LibTorch CPU;
#   2. `anomalyd bench` on cuda:0 and on LibTorch CPU, side by side with
#      PyTorch (benches/pytorch_side.py) on the same GPU and CPU, same shapes.
#
#   3. with NAB_DIR set (a dataset in eval's layout), `anomalyd eval` on its
#      five scored groups with the LSTM and the dense model, on cuda:0 and on
#      flex with every core: the F1 each device reaches and the wall time.
#
#   benches/gpu-check.sh BINARY CSV OUT_DIR
#
# BINARY is an `anomalyd` built with `--features tch` against a CUDA
# libtorch of the host's torch version (README, "LibTorch backend"); the
# host's own torch provides the libraries at run time.
set -uo pipefail
binary="$1"; csv="$2"; out="$3"
mkdir -p "$out"
torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${EXTRA_LD_LIBRARY_PATH:+:$EXTRA_LD_LIBRARY_PATH}"
threads="${THREADS:-$(nproc)}"
log() { echo "== $*" | tee -a "$out/log.txt"; }
run() { echo "\$ $*" >>"$out/log.txt"; "$@" 2>>"$out/log.txt"; }

log "host"
nvidia-smi -L | tee -a "$out/log.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$out/log.txt"
run "$binary" --version | tee -a "$out/log.txt"

log "train on cuda:0, score on cuda:0, libtorch and cpu"
run "$binary" train --data "$csv" --unordered drop --window 32 --kind lstm --code 16 \
  --epochs 3 --device cuda:0 --out "$out/model-cuda" || echo "TRAIN FAILED" | tee -a "$out/log.txt"
for device in cuda:0 libtorch cpu; do
  run "$binary" score --model "$out/model-cuda" --data "$csv" --unordered drop \
    --device "$device" --out "$out/scores-${device%%:*}.csv" || echo "SCORE $device FAILED" | tee -a "$out/log.txt"
done
python3 - "$out" <<'EOF' | tee -a "$out/log.txt"
import csv, sys
out = sys.argv[1]
def column(name):
    with open(f"{out}/scores-{name}.csv") as f:
        rows = list(csv.DictReader(f))
    return [float(r["error"]) for r in rows if r.get("error") not in (None, "")]
cuda = column("cuda")
for other in ("libtorch", "cpu"):
    ref = column(other)
    worst = max(abs(a - b) / max(abs(a), abs(b), 1e-30) for a, b in zip(cuda, ref))
    print(f"parity cuda:0 vs {other}: {len(cuda)} windows, worst relative error {worst:.2e}")
EOF

log "demo on cuda:0"
run timeout 120 "$binary" demo --device cuda:0 --json --listen 127.0.0.1:0 >"$out/demo.json" \
  && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in list(d)[:6]})' "$out/demo.json" | tee -a "$out/log.txt" \
  || echo "DEMO FAILED" | tee -a "$out/log.txt"

log "bench (threads=$threads)"
here="$(dirname "$0")"
shapes=(
  "--kind lstm --window 64 --hidden 64 --infer-batch 256 --train-batch 64"
  "--kind lstm --window 64 --hidden 64 --infer-batch 4096 --train-batch 512"
  "--kind dense --window 64 --hidden 64 --infer-batch 256 --train-batch 64"
  "--kind dense --window 64 --hidden 64 --infer-batch 16384 --train-batch 1024"
)
for shape in "${shapes[@]}"; do
  for device in cuda:0 cpu; do
    # shellcheck disable=SC2086
    run python3 "$here/pytorch_side.py" $shape --threads "$threads" --reps 20 --device "$device" | tee -a "$out/bench.jsonl"
    ours=$([ "$device" = cpu ] && echo libtorch || echo "$device")
    # shellcheck disable=SC2086
    run "$binary" bench $shape --threads "$threads" --reps 20 --device "$ours" | tee -a "$out/bench.jsonl"
  done
done
if [ -n "${NAB_DIR:-}" ]; then
  groups=artificialWithAnomaly,realAWSCloudwatch,realAdExchange,realTraffic,realTweets
  for kind in "lstm --epochs 10" "dense"; do
    for device in cuda:0 cpu; do
      name="eval-${kind%% *}-${device%%:*}"
      log "$name"
      start=$(date +%s.%N)
      # shellcheck disable=SC2086
      run timeout "${EVAL_TIMEOUT:-150}" "$binary" eval --dataset "$NAB_DIR" --protocol orion \
        --groups "$groups" --kind $kind --device "$device" --no-plots --out "$out/$name" \
        || echo "EVAL $name FAILED OR TIMED OUT" | tee -a "$out/log.txt"
      end=$(date +%s.%N)
      python3 - "$out/$name/report.json" "$start" "$end" "$name" <<'EOF' | tee -a "$out/log.txt"
import json, sys
path, start, end, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
try:
    report = json.load(open(path))
except OSError:
    report = {}
groups = {g: round(v["f1"], 3) for g, v in report.get("groups", {}).items()}
print(json.dumps({"run": name, "wall_s": round(end - start, 1), "mean_f1": report.get("mean_f1"), "groups": groups}))
EOF
    done
  done
fi
log "done"
