#!/usr/bin/env python3
"""anomalyd against PyTorch eager, side by side, by the protocol of
../shared/bench/README.md: same machine, same shapes and thread count, the
two programs alternated (A B A B ...) `--rounds` times, the median ratio
quoted. Prints a Markdown table; `--json` adds every raw line.

  python3 benches/compare.py --anomalyd target/release/anomalyd \
      --torch-python /opt/torch-venv/bin/python --kinds lstm,dense,conv,vae

The PyTorch side is benches/pytorch_side.py (the reference's models and
protocol, plus conv and vae shaped as `anomalyd bench` builds them). Only
the standard library is needed here; torch only in --torch-python.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def run(command, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed: {result.stderr.strip()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def rates(runs):
    def one(value):
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"
    return ", ".join(one(r["infer_windows_per_s"]) for r in runs)


def times(runs):
    return ", ".join(f"{r['train_step_ms']:.3g}" for r in runs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--anomalyd", required=True)
    p.add_argument("--torch-python", required=True)
    p.add_argument("--kinds", default="lstm,dense,conv,vae")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--features", type=int, default=1)
    p.add_argument("--infer-batch", type=int, default=256)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    shape = ["--window", str(a.window), "--hidden", str(a.hidden), "--features", str(a.features),
             "--infer-batch", str(a.infer_batch), "--train-batch", str(a.train_batch),
             "--threads", str(a.threads), "--reps", str(a.reps)]
    print(f"T={a.window} H={a.hidden} F={a.features}, scoring batch {a.infer_batch}, "
          f"training batch {a.train_batch}, {a.threads} threads, {a.rounds} alternations; ratio > 1: anomalyd faster\n")
    print("| model | scoring windows/s, anomalyd / PyTorch | ratio | training step ms, anomalyd / PyTorch | ratio |")
    print("|---|---|---|---|---|")
    raw = []
    for kind in a.kinds.split(","):
        ours, theirs = [], []
        for _ in range(a.rounds):
            ours.append(run([a.anomalyd, "bench", "--kind", kind, *shape], a.threads))
            theirs.append(run([a.torch_python, str(HERE / "pytorch_side.py"), "--kind", kind, *shape], a.threads))
        raw += ours + theirs
        score = statistics.median(o["infer_windows_per_s"] / t["infer_windows_per_s"] for o, t in zip(ours, theirs))
        train = statistics.median(t["train_step_ms"] / o["train_step_ms"] for o, t in zip(ours, theirs))
        print(f"| {kind} | {rates(ours)} / {rates(theirs)} | {score:.2f}× "
              f"| {times(ours)} / {times(theirs)} | {train:.2f}× |", flush=True)
    if a.json:
        for line in raw:
            print(json.dumps(line))


if __name__ == "__main__":
    main()
