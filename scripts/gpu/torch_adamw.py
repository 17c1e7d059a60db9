#!/usr/bin/env python3
"""Conformance vectors for package optim from real torch.optim.AdamW.

For each case below it runs STEPS steps of torch.optim.AdamW(foreach=False)
on small fp32 parameters, with torch.nn.utils.clip_grad_norm_ before each
step when max_norm > 0 and a LambdaLR warmup-cosine schedule (transformers'
get_cosine_with_min_lr_schedule_with_warmup; its own function when
transformers is installed, else the same formula inline), and writes into one
safetensors file (written by hand with json+struct: no safetensors or numpy
package needed):

  <case>/p<i>/init         the initial parameter, in the case's dtype
  <case>/p<i>/grads        [STEPS, *shape] the gradient of every step, in the case's dtype
  <case>/p<i>/final        F32: the parameter after the last step (the fp32 master)
  <case>/p<i>/final_param  the final parameter in the case's dtype (master.to(dtype))
  <case>/p<i>/exp_avg, <case>/p<i>/exp_avg_sq   F32: the optimizer's state after the last step
  <case>/norms             F32 [STEPS]: the global gradient norm of each step (clip_grad_norm_'s
                           return value; computed the same way when the case does not clip)
  <case>/lrs               F64 [STEPS]: the learning rate of each step
  __metadata__             format, torch version, steps, cases (JSON list) and case.<name>
                           (JSON: dtype, shapes, lr, betas, eps, weight_decay, max_norm,
                           warmup, total, min_ratio; warmup null = constant rate)

bf16/f16 cases are package optim's master-weight semantics in torch terms: an
fp32 master initialised from the 16-bit values, fp32 AdamW on it with the
16-bit gradients widened to fp32, and the parameter = master.to(dtype).

Runs on the CPU by default (the reference: CUDA's tensor/scalar division
multiplies by the reciprocal, the CPU divides), single-threaded, seeded, in
well under a minute:

  python3 scripts/gpu/torch_adamw.py                 # writes testdata/optim/adamw_torch.safetensors
  python3 scripts/gpu/torch_adamw.py --out x.safetensors --device cuda

`go test ./optim` (TestTorchVectors) then compares package optim with the file.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch

STEPS = 100
FORMAT = "vklora.optim.torch_adamw/1"

CASES = [
    dict(name="f32_wd_clip_cosine", dtype="f32", shapes=[[7, 13], [33], [5, 3, 2]], lr=1e-2,
         betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1, max_norm=1.0, warmup=10, total=100,
         min_ratio=0.1, gscale=1.0),
    dict(name="f32_defaults_clip_inactive", dtype="f32", shapes=[[17, 9], [31]], lr=1e-3,
         betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2, max_norm=1e3, warmup=None, total=0,
         min_ratio=0.0, gscale=1.0),
    dict(name="f32_small_betas_no_clip", dtype="f32", shapes=[[129], [3, 41]], lr=3e-3,
         betas=[0.3, 0.6], eps=1e-6, weight_decay=0.05, max_norm=0.0, warmup=None, total=0,
         min_ratio=0.0, gscale=0.1),
    dict(name="bf16_master_clip", dtype="bf16", shapes=[[9, 17], [65]], lr=1e-2,
         betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, max_norm=0.5, warmup=None, total=0,
         min_ratio=0.0, gscale=1.0),
    dict(name="f16_master_cosine", dtype="f16", shapes=[[11, 3], [1]], lr=5e-3,
         betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2, max_norm=0.0, warmup=5, total=100,
         min_ratio=0.0, gscale=1e-2),
]

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
ST_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}


def cosine_lambda(warmup, total, min_ratio):
    """transformers' _get_cosine_schedule_with_warmup_lr_lambda with min_lr_rate, num_cycles=0.5."""
    try:
        from functools import partial
        from transformers.optimization import _get_cosine_with_min_lr_schedule_with_warmup_lr_lambda as f
        return partial(f, num_warmup_steps=warmup, num_training_steps=total, num_cycles=0.5,
                       min_lr_rate=min_ratio), "transformers"
    except Exception:
        pass

    def lam(current_step):
        if current_step < warmup:
            return float(current_step) / float(max(1, warmup))
        progress = float(current_step - warmup) / float(max(1, total - warmup))
        factor = 0.5 * (1.0 + math.cos(math.pi * float(0.5) * 2.0 * progress))
        factor = factor * (1 - min_ratio) + min_ratio
        return max(0, factor)
    return lam, "inline"


def raw_bytes(t):
    t = t.detach().to("cpu").contiguous().flatten()
    if t.dtype == torch.float32:
        return struct.pack("<%df" % t.numel(), *t.tolist())
    if t.dtype == torch.float64:
        return struct.pack("<%dd" % t.numel(), *t.tolist())
    if t.dtype in (torch.bfloat16, torch.float16):
        return struct.pack("<%dh" % t.numel(), *t.view(torch.int16).tolist())
    raise ValueError(t.dtype)


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        b = raw_bytes(t)
        header[name] = {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def global_norm(grads):
    return torch.norm(torch.stack([torch.norm(g.detach(), 2.0) for g in grads]), 2.0)


def run_case(c, device, gen):
    dt = DTYPES[c["dtype"]]
    init = [torch.randn(s, generator=gen).to(dt) for s in c["shapes"]]
    grads = [[(torch.randn(s, generator=gen) * c["gscale"]).to(dt) for s in c["shapes"]] for _ in range(STEPS)]
    params = [torch.nn.Parameter(x.to(torch.float32).clone().to(device)) for x in init]
    opt = torch.optim.AdamW(params, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"],
                            weight_decay=c["weight_decay"], amsgrad=False, foreach=False)
    if c["warmup"] is None:
        lam, source = (lambda k: 1.0), "constant"
    else:
        lam, source = cosine_lambda(c["warmup"], c["total"], c["min_ratio"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    norms, lrs = [], []
    for k in range(STEPS):
        for p, g in zip(params, grads[k]):
            p.grad = g.to(torch.float32).clone().to(device)
        if c["max_norm"] > 0:
            try:
                n = torch.nn.utils.clip_grad_norm_(params, c["max_norm"], foreach=False)
            except TypeError:  # torch < 2.0 has no foreach argument
                n = torch.nn.utils.clip_grad_norm_(params, c["max_norm"])
        else:
            n = global_norm([p.grad for p in params])
        norms.append(float(n))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    out = []
    name = c["name"]
    for i, p in enumerate(params):
        st = opt.state[p]
        pre = "%s/p%d/" % (name, i)
        out += [(pre + "init", init[i]),
                (pre + "grads", torch.stack([g[i] for g in grads])),
                (pre + "final", p.detach().to("cpu")),
                (pre + "final_param", p.detach().to("cpu").to(dt)),
                (pre + "exp_avg", st["exp_avg"].to("cpu")),
                (pre + "exp_avg_sq", st["exp_avg_sq"].to("cpu"))]
    out += [(name + "/norms", torch.tensor(norms, dtype=torch.float32)),
            (name + "/lrs", torch.tensor(lrs, dtype=torch.float64))]
    cfg = {k: c[k] for k in ("dtype", "shapes", "lr", "betas", "eps", "weight_decay", "max_norm", "warmup", "total", "min_ratio")}
    cfg["schedule_source"] = source
    return out, cfg


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "testdata", "optim", "adamw_torch.safetensors"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=20241203)
    a = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(a.seed)
    tensors, meta = [], {"format": FORMAT, "torch": torch.__version__, "steps": str(STEPS),
                         "device": a.device, "seed": str(a.seed), "cases": json.dumps([c["name"] for c in CASES])}
    for c in CASES:
        t, cfg = run_case(c, a.device, gen)
        tensors += t
        meta["case." + c["name"]] = json.dumps(cfg)
    write_safetensors(a.out, tensors, meta)
    print("torch_adamw: %d cases x %d steps (torch %s, %s) -> %s" % (len(CASES), STEPS, torch.__version__, a.device, a.out))


if __name__ == "__main__":
    sys.exit(main())
