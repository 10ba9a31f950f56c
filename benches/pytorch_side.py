#!/usr/bin/env python3
"""The PyTorch side of `anomalyd bench`, on the CPU or a GPU.

Same flags, models, protocol and JSON keys as `../shared/bench/pytorch_reference.py`
(the team's CPU reference), plus `--device`, so that

  anomalyd bench --kind lstm --device cuda:0 ...
  python3 benches/pytorch_side.py --kind lstm --device cuda:0 ...

measure the same thing: the median of one forward pass on one batch without autodiff
(windows/s), and the median of one Adam step (forward, MSE, backward, update) on one
batch (ms). Reading the loss or the output sum back waits for the GPU, so the times
include the device work. Needs torch; benches/gpu-check.sh runs it.
"""
import argparse, json, math, statistics, time

import torch
import torch.nn as nn


class LstmAe(nn.Module):
    """LSTM encoder, last hidden state as the code repeated over T, LSTM decoder, linear head."""

    def __init__(self, features, hidden):
        super().__init__()
        self.enc = nn.LSTM(features, hidden, batch_first=True)
        self.dec = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, features)

    def forward(self, x):
        _, (h, _) = self.enc(x)
        code = h[-1].unsqueeze(1).expand(-1, x.shape[1], -1)
        y, _ = self.dec(code)
        return self.out(y)


class DenseAe(nn.Module):
    """T*F -> H -> H/4 (code) -> H -> T*F with ReLU between."""

    def __init__(self, d, hidden):
        super().__init__()
        code = max(1, hidden // 4)
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, code),
                                 nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x):
        return self.net(x.flatten(1)).view_as(x)


def sine_windows(batch, window, features, gen, device):
    t = torch.arange(window, dtype=torch.float32).view(1, window, 1)
    freq = torch.empty(batch, 1, features).uniform_(1, 4, generator=gen)
    phase = torch.empty(batch, 1, features).uniform_(0, 2 * math.pi, generator=gen)
    noise = torch.empty(batch, window, features).uniform_(-0.05, 0.05, generator=gen)
    # Drawn on the CPU, then moved: the copy is outside the timed region.
    return (torch.sin(2 * math.pi * freq * t / window + phase) + noise).to(device)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=["lstm", "dense"], default="lstm")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--features", type=int, default=1)
    p.add_argument("--infer-batch", type=int, default=256)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = LstmAe(a.features, a.hidden) if a.kind == "lstm" else DenseAe(a.window * a.features, a.hidden)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()

    steps = []
    for i in range(3 + a.reps):
        x = sine_windows(a.train_batch, a.window, a.features, gen, device)
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x), x)
        loss.backward()
        opt.step()
        loss.item()
        if i >= 3:
            steps.append(time.perf_counter() - t0)

    x = sine_windows(a.infer_batch, a.window, a.features, gen, device)
    infer = []
    model.eval()
    with torch.inference_mode():
        for i in range(3 + a.reps):
            t0 = time.perf_counter()
            model(x).sum().item()
            if i >= 3:
                infer.append(time.perf_counter() - t0)
    med = statistics.median(infer)
    print(json.dumps({
        "impl": f"pytorch-{torch.__version__}", "kind": a.kind, "window": a.window, "hidden": a.hidden,
        "features": a.features, "threads": a.threads, "device": a.device,
        "train_step_ms": round(statistics.median(steps) * 1e3, 3), "train_batch": a.train_batch,
        "infer_windows_per_s": round(a.infer_batch / med, 1), "infer_batch": a.infer_batch,
    }))


if __name__ == "__main__":
    main()
