# PyTorch peer of `bench_kernels --filter sgemm`: python torch_sgemm.py THREADS [ITERS] (JSON on stdout).
# Times torch.mm / torch.bmm on the bench_kernels sgemm shapes: median ms and GFLOP/s.
import sys, time, statistics, json, torch
threads = int(sys.argv[1]); iters = int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(threads)
r = lambda *s: torch.rand(*s) * 2 - 1
cases = {
 "sgemm 1024x1024x1024 nn": (lambda a, b: a @ b, r(1024, 1024), r(1024, 1024), 2*1024**3),
 "sgemm 6400x64x64 nn (linear)": (lambda a, b: a @ b, r(6400, 64), r(64, 64), 2*6400*64*64),
 "sgemm 6400x64x64 nt (linear dX)": (lambda a, b: a @ b.t(), r(6400, 64), r(64, 64), 2*6400*64*64),
 "sgemm 64x6400x64 tn (linear dW)": (lambda a, b: a.t() @ b, r(6400, 64), r(6400, 64), 2*6400*64*64),
 "sgemm batched 128x[50x64x64] shared B": (lambda a, b: a @ b, r(128, 50, 64), r(64, 64), 2*6400*64*64),
 "sgemm 6400x64x1683 nt (logits)": (lambda a, b: a @ b.t(), r(6400, 64), r(1683, 64), 2*6400*64*1683),
 "sgemm 6400x64x1683 nn": (lambda a, b: a @ b, r(6400, 64), r(64, 1683), 2*6400*64*1683),
 "sgemm 6400x1683x64 nn (logits dH)": (lambda a, b: a @ b, r(6400, 1683), r(1683, 64), 2*6400*64*1683),
 "sgemm 1683x6400x64 tn (logits dE)": (lambda a, b: a.t() @ b, r(6400, 1683), r(6400, 64), 2*6400*64*1683),
 "sgemm batched 128x[50x64x50] nt (QK^T)": (lambda a, b: a @ b.transpose(1, 2), r(128, 50, 64), r(128, 50, 64), 2*128*50*64*50),
 "sgemm batched 128x[50x50x64] nn (PV)": (lambda a, b: a @ b, r(128, 50, 50), r(128, 50, 64), 2*128*50*64*50),
}
out = {}
for name, (f, a, b, flops) in cases.items():
    for _ in range(5): f(a, b)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter(); f(a, b); ts.append(time.perf_counter() - t0)
    med = statistics.median(ts) * 1e3
    out[name] = {"median_ms": med, "gflops": flops / med / 1e6}
    print(f"{name:44s} {med:9.3f} ms {flops/med/1e6:8.1f} GFLOP/s", file=sys.stderr)
print(json.dumps({"threads": threads, "kernels": out}))
