#!/usr/bin/env python3
"""The PyTorch side of `anomalyd bench`, on the CPU or a GPU.

Same flags, models, protocol and JSON keys as `../shared/bench/pytorch_reference.py`
(the team's CPU reference), plus `--device`, and two more models shaped as
`anomalyd bench` builds them (`--kind conv`: stride-2 Conv1d F->H->H/4 and
transposed convolutions back, kernel 5; `--kind vae`: T*F -> H -> H/4 mean and
log-variance, H/4 -> H -> T*F, trained on the ELBO with beta 1), so that

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


class ConvAe(nn.Module):
    """anomalyd's conv kind: two stride-2 convolutions down, two transposed ones up."""

    def __init__(self, window, features, channels, code_channels, kernel=5):
        super().__init__()
        pad = kernel // 2
        after_first = (window + 1) // 2
        after_second = (after_first + 1) // 2
        self.down1 = nn.Conv1d(features, channels, kernel, stride=2, padding=pad)
        self.down2 = nn.Conv1d(channels, code_channels, kernel, stride=2, padding=pad)
        self.up1 = nn.ConvTranspose1d(code_channels, channels, kernel, stride=2, padding=pad,
                                      output_padding=after_first + 1 - 2 * after_second)
        self.up2 = nn.ConvTranspose1d(channels, features, kernel, stride=2, padding=pad,
                                      output_padding=window + 1 - 2 * after_first)

    def forward(self, x):
        h = torch.relu(self.down1(x.transpose(1, 2)))
        h = torch.relu(self.up1(self.down2(h)))
        return self.up2(h).transpose(1, 2)


class Vae(nn.Module):
    """anomalyd's vae kind; scores with the mean code, trains on the ELBO."""

    def __init__(self, d, hidden, latent):
        super().__init__()
        self.encoder = nn.Linear(d, hidden)
        self.mean = nn.Linear(hidden, latent)
        self.log_variance = nn.Linear(hidden, latent)
        self.decoder_hidden = nn.Linear(latent, hidden)
        self.decoder_out = nn.Linear(hidden, d)
        self.kl = None

    def forward(self, x):
        h = torch.relu(self.encoder(x.flatten(1)))
        mean, log_variance = self.mean(h), self.log_variance(h)
        z = mean
        if self.training:
            z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
            kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum(1)
            self.kl = kl.mean() / x[0].numel()
        out = self.decoder_out(torch.relu(self.decoder_hidden(z)))
        return out.view_as(x)


def sine_windows(batch, window, features, gen, device):
    t = torch.arange(window, dtype=torch.float32).view(1, window, 1)
    freq = torch.empty(batch, 1, features).uniform_(1, 4, generator=gen)
    phase = torch.empty(batch, 1, features).uniform_(0, 2 * math.pi, generator=gen)
    noise = torch.empty(batch, window, features).uniform_(-0.05, 0.05, generator=gen)
    # Drawn on the CPU, then moved: the copy is outside the timed region.
    return (torch.sin(2 * math.pi * freq * t / window + phase) + noise).to(device)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=["lstm", "dense", "conv", "vae"], default="lstm")
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
    code = max(1, a.hidden // 4)
    model = {
        "lstm": lambda: LstmAe(a.features, a.hidden),
        "dense": lambda: DenseAe(a.window * a.features, a.hidden),
        "conv": lambda: ConvAe(a.window, a.features, a.hidden, code),
        "vae": lambda: Vae(a.window * a.features, a.hidden, code),
    }[a.kind]().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()

    steps = []
    for i in range(3 + a.reps):
        x = sine_windows(a.train_batch, a.window, a.features, gen, device)
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x), x)
        if getattr(model, "kl", None) is not None:
            loss = loss + model.kl
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
