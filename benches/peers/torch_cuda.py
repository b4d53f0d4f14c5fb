#!/usr/bin/env python3
"""PyTorch CUDA peer for `bench_kernels --device gpu`: the same cases on the same shapes,
timed per call to the GPU's completion (torch.cuda.synchronize), median of --iters calls
after warm-up. PyTorch eager mode (no torch.compile), fp32 with TF32 matmuls switched off so
that both sides do fp32 arithmetic.

Run on a GPU machine beside ../shared/peers (torch_sasrec.py, peer_common.py):
    python3 torch_cuda.py --peers PATH/TO/shared/peers --out torch_cuda.json
Case names match bench_kernels' names.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def timeit(fn, iters, warmup=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p10_ms": times[int(0.1 * iters)],
            "p90_ms": times[min(iters - 1, int(0.9 * iters))], "iters": iters}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", required=True)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, args.peers)
    from torch_sasrec import SASRec
    from peer_common import seq_loss

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    torch.manual_seed(0)
    res = {}
    B, d = 128, 64

    def pair(name, inputs, f, params, flops):
        """`name` has a {} where bench_kernels puts fwd / fwdbwd."""
        def fwd():
            with torch.no_grad():
                f(*inputs)

        def fwdbwd():
            for t in inputs + params:
                t.grad = None
            y = f(*inputs)
            y.backward(torch.ones_like(y))

        for suffix, fn, fl in (("fwd", fwd, flops), ("fwdbwd", fwdbwd, 3 * flops)):
            r = timeit(fn, args.iters)
            r["gflops"] = fl / (r["median_ms"] * 1e-3) / 1e9
            res[name.format(suffix)] = r
            print(f"{name.format(suffix)}: {r['median_ms']:.3f} ms", file=sys.stderr, flush=True)

    for L in (50, 200):
        qkv = [torch.randn(B, 1, L, d, device=dev, requires_grad=True) for _ in range(3)]
        pair("attention_{}_h1_L%d" % L, qkv,
             lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [],
             4 * B * L * L * d)
    gru = nn.GRU(64, 64, batch_first=True).to(dev)
    pair("gru_{}", [torch.randn(B, 50, 64, device=dev, requires_grad=True)],
         lambda x: gru(x)[0], list(gru.parameters()), 2 * 3 * (64 * 64 * 2) * B * 50)
    ffn = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)).to(dev)
    pair("ffn64_{}", [torch.randn(6400, 64, device=dev, requires_grad=True)],
         ffn, list(ffn.parameters()), 2 * 2 * 6400 * 64 * 64)

    n_items = 1682
    for L, loss, p in ((50, "ce", 0.2), (50, "ce", 0.0), (50, "bce", 0.2), (200, "ce", 0.2)):
        torch.manual_seed(0)
        m = SASRec(n_items, 64, L, 2, 1, p).to(dev)
        m.train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        x = torch.randint(1, n_items + 1, (B, L), device=dev)
        y = torch.randint(1, n_items + 1, (B, L), device=dev)
        neg = torch.randint(1, n_items + 1, (B, L), device=dev)

        def step():
            h = m.seq_hidden(x)
            l = seq_loss(m, h, y, neg, loss)
            opt.zero_grad(set_to_none=True)
            l.backward()
            opt.step()
            return l.item()

        r = timeit(step, max(20, args.iters // 2), warmup=5)
        name = f"sasrec_train_step_{loss}_L{L}_dropout{p}"
        res[name] = r
        print(f"{name}: {r['median_ms']:.3f} ms", file=sys.stderr, flush=True)

    for n in (1024, 2048):
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        r = timeit(lambda: torch.mm(a, b), args.iters)
        r["gflops"] = 2 * n ** 3 / (r["median_ms"] * 1e-3) / 1e9
        res[f"sgemm {n}x{n}x{n} nn"] = r
    out = {"results": res, "env": {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
                                   "tf32": False}}
    js = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(js)
    print(js)


if __name__ == "__main__":
    main()
