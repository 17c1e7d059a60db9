#!/usr/bin/env python3
"""PEFT's own cost of its LoRA extensions (dropout, lora_bias, DoRA) on the layers of a preset, the
PyTorch side of docs/PERFORMANCE.md's "extensions" table (lorabench bench -dropout P / -lora-bias /
-dora is the vklora side; run both in one session on one card and compare ratios).

Each op is a stack of real PEFT LoRA Linears (peft.tuners.lora, get_peft_model on a module of
nn.Linear q,k,v,o,gate,up,down with the preset's sizes), bf16 base and adapters (autocast_adapter_dtype
off), training mode. It times forward+backward (CUDA events, median of --reps after warm-ups) with the
adapter's gradients and dX, as lorabench's fwdbwd does, for each feature set.

Usage: python3 scripts/gpu/torch_peft_ext.py [--preset llama3-8b] [--dropout 0.05] [--reps 10]
Prints one JSON line per (op, features) and a ratio table against plain LoRA.
"""
import argparse, json, os, sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import peft

# The presets and the CUDA-event timer are torch_reference.py's, beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import PRESETS, bench  # noqa: E402


class Layer(nn.Module):
    def __init__(self, p):
        super().__init__()
        H, I, Q, KV = p["H"], p["I"], p["Q"], p["KV"]
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(H, Q, bias=False), nn.Linear(H, KV, bias=False), nn.Linear(H, KV, bias=False)
        self.o_proj = nn.Linear(Q, H, bias=False)
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(H, I, bias=False), nn.Linear(H, I, bias=False), nn.Linear(I, H, bias=False)
        self.act = F.silu if p["act"] == "swiglu" else (lambda g: F.gelu(g, approximate="tanh"))

    def forward(self, x):
        return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama3-8b", choices=list(PRESETS))
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    p = PRESETS[a.preset]
    torch.backends.cuda.matmul.allow_tf32 = False
    feats = [("lora", {}), ("dropout", dict(lora_dropout=a.dropout)), ("lora_bias", dict(lora_bias=True)), ("dora", dict(use_dora=True))]
    rows = {}
    for fname, kw in feats:
        torch.manual_seed(0)
        base = Layer(p).to("cuda", torch.bfloat16)
        cfg = peft.LoraConfig(r=p["r"], lora_alpha=2 * p["r"], target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], **kw)
        m = peft.get_peft_model(base, cfg, autocast_adapter_dtype=False).to(torch.bfloat16)
        m.train()
        for n, t in m.named_parameters():
            if "lora_B" in n:
                nn.init.normal_(t, std=0.01)
        L = m.base_model.model
        mlp = lambda x: L.down_proj(L.act(L.gate_proj(x)) * L.up_proj(x))
        qkv = lambda x: torch.cat([L.q_proj(x), L.k_proj(x), L.v_proj(x)], dim=1)
        o = lambda x: L.o_proj(x)
        for op, fn, nin, nout in (("mlp", mlp, p["H"], p["H"]), ("qkv", qkv, p["H"], p["Q"] + 2 * p["KV"]), ("o", o, p["Q"], p["H"])):
            X = torch.randn(p["M"], nin, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            dY = torch.randn(p["M"], nout, device="cuda", dtype=torch.bfloat16)
            ms = bench(lambda: fn(X).backward(dY), reps=a.reps, warm=3)
            rows[(op, fname)] = ms
            print(json.dumps(dict(preset=a.preset, op=op, features=fname, fwdbwd_ms=round(ms, 3), peft=peft.__version__,
                                  torch=torch.__version__, device=torch.cuda.get_device_name())), flush=True)
            del X, dY
        del m, base
        torch.cuda.empty_cache()
    print(f"PEFT {peft.__version__}, {a.preset}, fwd+bwd ms (× plain LoRA):")
    for op in ("mlp", "qkv", "o"):
        plain = rows[(op, "lora")]
        print(f"  {op:4s} " + "  ".join(f"{f}={rows[(op, f)]:.3f} ({rows[(op, f)] / plain:.2f}×)" for f, _ in feats))


if __name__ == "__main__":
    main()
