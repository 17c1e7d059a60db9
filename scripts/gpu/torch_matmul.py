"""cuBLAS matmul throughput through PyTorch, the ceiling lorabench matmul is
compared with: C = A·Bᵀ (the X·Wᵀ form), CUDA events, median of reps after
warm-ups. Prints one JSON object per size and dtype.

Runs on an NVIDIA GPU machine with PyTorch:
    python3 scripts/gpu/torch_matmul.py [--sizes 4096,8192] [--shapes "M,N,K;..."] [--dtype bf16,fp16] [--reps 20] [--warmup 5]

--shapes times C[M,N] = A[M,K]·B[N,K]ᵀ at each shape instead of the cubes.
"""
import argparse, json, statistics, torch

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="4096,8192")
ap.add_argument("--shapes", default="")
ap.add_argument("--dtype", default="bf16,fp16")
ap.add_argument("--reps", type=int, default=20)
ap.add_argument("--warmup", type=int, default=5)
a = ap.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
for name in a.dtype.split(","):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    shapes = [tuple(map(int, t.split(","))) for t in a.shapes.split(";") if t] or \
        [(n, n, n) for n in map(int, a.sizes.split(","))]
    for m, n, k in shapes:
        x = torch.randn(m, k, device="cuda", dtype=dt)
        w = torch.randn(n, k, device="cuda", dtype=dt)
        ts = []
        for i in range(a.warmup + a.reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); x @ w.t(); e.record(); torch.cuda.synchronize()
            if i >= a.warmup:
                ts.append(s.elapsed_time(e))
        ms = statistics.median(ts)
        print(json.dumps({"op": "matmul", "dtype": name, "m": m, "n": n, "k": k, "ms": round(ms, 4),
                          "tflops": round(2 * m * n * k / ms / 1e9, 1), "device": torch.cuda.get_device_name()}))
