#!/usr/bin/env python3
"""Reference timings for LoRA layers in PyTorch eager mode (cuBLAS), the baseline a user would pick:
the PyTorch side of the comparisons in docs/PERFORMANCE.md.

Runs on an NVIDIA GPU machine that has PyTorch (CUDA). Semantics follow PEFT's LoRA Linear:
    y = X @ W.T + s * (X @ A.T) @ B.T        W [out,in], A [r,in], B [out,r], s = alpha / r
The base weights are frozen (no dW); gradients flow to X, A and B. The presets are lorabench's
(`lorabench bench -preset NAME`), so run both in the same session on the same card and compare the
ratio, not the absolute times: scripts/gpu/gpu-bench.sh (PART=layers) does exactly that.

Usage: python3 scripts/gpu/torch_reference.py [--dtype bf16|fp16|fp32] [--preset NAME ...] [--json FILE]
Prints one JSON object per (preset, op) with median milliseconds of forward and of
forward+backward, achieved TFLOP/s, and peak device memory of the fwd+bwd step.
"""
import argparse, json, sys
import torch
import torch.nn.functional as F

PRESETS = {
    # name: tokens M, hidden H, intermediate I, q out, kv out, rank r, activation
    "llama3-8b":  dict(M=8192, H=4096, I=14336, Q=4096, KV=1024, r=16, act="swiglu"),
    "llama3-8b-r64": dict(M=8192, H=4096, I=14336, Q=4096, KV=1024, r=64, act="swiglu"),
    "gemma-2b":   dict(M=8192, H=2048, I=16384, Q=2048, KV=256, r=16, act="geglu"),
    "qwen2.5-0.5b": dict(M=4096, H=896, I=4864, Q=896, KV=128, r=16, act="swiglu"),
}

def bench(fn, reps=20, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]

def lin_flops(M, K, N, r):
    fwd = 2 * M * K * N + 2 * M * r * (K + N)
    bwd = 2 * M * K * N + 2 * M * r * (2 * K + 2 * N)  # dX through W, dA, dB, dX through A,B
    return fwd, bwd

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--preset", nargs="*", default=list(PRESETS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dt = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=torch.float32)[a.dtype]
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = "cuda"
    torch.manual_seed(0)
    out = []
    for name in a.preset:
        p = PRESETS[name]; M, H, I, Q, KV, r = p["M"], p["H"], p["I"], p["Q"], p["KV"], p["r"]
        s = 2.0
        def w(o, i): return torch.randn(o, i, device=dev, dtype=dt) / i ** 0.5
        def ab(o, i): return (w(r, i).requires_grad_(), (w(o, r) * 0.1).requires_grad_())
        def lin(x, W, A, B): return x @ W.t() + s * ((x @ A.t()) @ B.t())
        act = (lambda g: F.silu(g)) if p["act"] == "swiglu" else (lambda g: F.gelu(g, approximate="tanh"))
        ops = {}
        Wg, Wu, Wd = w(I, H), w(I, H), w(H, I)
        (Ag, Bg), (Au, Bu), (Ad, Bd) = ab(I, H), ab(I, H), ab(H, I)
        ops["mlp_" + p["act"]] = (lambda x: lin(act(lin(x, Wg, Ag, Bg)) * lin(x, Wu, Au, Bu), Wd, Ad, Bd),
                                   [lin_flops(M, H, I, r), lin_flops(M, H, I, r), lin_flops(M, I, H, r)], H)
        Wq, Wk, Wv, Wo = w(Q, H), w(KV, H), w(KV, H), w(H, Q)
        (Aq, Bq), (Ak, Bk), (Av, Bv), (Ao, Bo) = ab(Q, H), ab(KV, H), ab(KV, H), ab(H, Q)
        ops["qkv"] = (lambda x: torch.cat([lin(x, Wq, Aq, Bq), lin(x, Wk, Ak, Bk), lin(x, Wv, Av, Bv)], dim=1),
                      [lin_flops(M, H, Q, r), lin_flops(M, H, KV, r), lin_flops(M, H, KV, r)], Q + 2 * KV)
        ops["o"] = (lambda x: lin(x, Wo, Ao, Bo), [lin_flops(M, Q, H, r)], H)
        for op, (fn, fl, nout) in ops.items():
            nin = Q if op == "o" else H
            X = torch.randn(M, nin, device=dev, dtype=dt, requires_grad=True)
            dY = torch.randn(M, nout, device=dev, dtype=dt)
            def fwd():
                with torch.no_grad():
                    fn(X)
            def fb():
                fn(X).backward(dY)
            t_f = bench(fwd)
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            base_mem = torch.cuda.memory_allocated()
            t_fb = bench(fb)
            peak = torch.cuda.max_memory_allocated() - base_mem
            ff = sum(f for f, _ in fl); bf = sum(b for _, b in fl)
            row = dict(preset=name, op=op, dtype=a.dtype, M=M, r=r, fwd_ms=round(t_f, 4), fwdbwd_ms=round(t_fb, 4),
                       fwd_tflops=round(ff / t_f / 1e9, 1), fwdbwd_tflops=round((ff + bf) / t_fb / 1e9, 1),
                       step_peak_extra_MiB=round(peak / 2**20, 1), device=torch.cuda.get_device_name())
            print(json.dumps(row), flush=True)
            out.append(row)
            del X, dY
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)

if __name__ == "__main__":
    main()
