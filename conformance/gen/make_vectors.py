#!/usr/bin/env python3
"""Reference test vectors for fused LoRA layers (PEFT semantics), with optional 4-bit NF4 base weights
stored in the bitsandbytes / transformers layout: the conformance vectors that package conformance,
`go test ./conformance/` and `lorabench check` read. docs/CONFORMANCE.md specifies the file format;
docs/LORA-MATH.md the math.

One projection:  Y = X @ W.T + s * (X @ A.T) @ B.T      X [M,in], W [out,in], A [r,in], B [out,r]
W is frozen; expected gradients are for X and every lora_A / lora_B.

Usage (from the repository root):
  python3 conformance/gen/make_vectors.py --out DIR [--seed N] [--suite small|full] [--device auto|cpu|cuda]
  python3 conformance/gen/make_vectors.py --check FILE_OR_DIR [...]   reload, recompute the float64 reference,
                                                                      compare to expect.*
  python3 conformance/gen/make_vectors.py --selftest                  checks of the NF4 / double-quant encoder
                                                                      and decoder

Expected values are computed in float64 on the CPU from the stored (dtype-rounded, dequantized) inputs.
The same computation in the case dtype with plain torch (cuda if available) gives torch_err.*; the engine
tolerance is tol = max(2 * torch_err, floor[dtype]) (the floors are ref.Tolerance(d).Conformance in Go).
Run it on a GPU machine that has PyTorch, so that torch_err is PyTorch's error on the hardware users
train on; testdata/small is `--suite small --seed 1`. On a machine without a Python toolchain of its
own, carry this file there (scripts/gpu/gpu-build.sh copies it into .devcarry/) and run it with the
machine's python3.

Needs only torch and safetensors (plus the Python standard library).
"""
import argparse
import json
import math
import os
import sys
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
BNB_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
TOL_FLOOR = {"f32": 1e-5, "f16": 2e-3, "bf16": 1.6e-2}
CHECK_TOL = 1e-6  # --check: recomputed float64 reference vs stored float32 expect.*

PROJ = {"matmul_lora": ["w"], "lora_o": ["o"], "lora_qkv": ["q", "k", "v"], "lora_mlp": ["gate", "up", "down"]}
ACTIVATIONS = ["swiglu", "geglu", "geglu_tanh"]
QUANTS = ["none", "nf4", "nf4-dq"]

# ----------------------------------------------------------------------------------------------------------
# bitsandbytes NF4 (blocksize 64) and double quantization (8-bit signed dynamic map, blocksize 256)
# ----------------------------------------------------------------------------------------------------------
NF4_BLOCK = 64
NESTED_BLOCK = 256
NF4_CODE = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
            -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
            0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
            0.7229568362236023, 1.0]
# The 15 decision thresholds of bitsandbytes' CUDA quantizer (dQuantizeNF4 in csrc/kernels.cu): the midpoints of
# adjacent table entries, written there as decimal float literals. These hex values are those literals rounded
# (correctly) to float32, as nvcc does (checked with nvcc 13). Code = number of thresholds t with x > t (strict),
# i.e. the nearest entry, ties to the lower code.
# Known difference: bitsandbytes is built with --use_fast_math, so its 1/absmax is an approximate reciprocal
# (within 1 ulp); here it is the correctly rounded one. In a test against a fast-math CUDA build of the same
# logic this changed 0 of 31M NF4 codes and about 6 in 10^7 of the 8-bit nested codes. The engine decodes the
# stored bytes, so this matters only for byte-for-byte comparison with bitsandbytes' own output.
NF4_THRESHOLDS_HEX = ["-0x1.b239b2p-1", "-0x1.38a4e0p-1", "-0x1.d70900p-2", "-0x1.5bd4ecp-2", "-0x1.e079d8p-3",
                      "-0x1.1a7178p-3", "-0x1.74f0e2p-5", "0x1.45f5fep-5", "0x1.ec90c6p-4", "0x1.a0cfc0p-3",
                      "0x1.2b05a8p-2", "0x1.8ea7f2p-2", "0x1.00da06p-1", "0x1.491b5ep-1", "0x1.b913b2p-1"]
NF4_THRESHOLDS = [float.fromhex(h) for h in NF4_THRESHOLDS_HEX]
QSTATE_SUFFIX = ".weight.quant_state.bitsandbytes__nf4"


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """Port of bitsandbytes.functional.create_dynamic_map (same torch ops, same float32 rounding)."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(
            2 ** (i + non_sign_bits - max_exponent_bits) + 1
            if signed
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1,
        )
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    gap = 256 - len(data)
    for i in range(gap):
        data.append(0)
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def bnb_dquantize(x, code):
    """Vectorised port of bitsandbytes' dQuantize<STOCHASTIC=0> (csrc/kernels.cu): binary search over the sorted
    256-entry map, then float32 midpoint tests against the neighbours. x: float32 1-D. Returns int64 indices."""
    pivot = torch.full(x.shape, 127, dtype=torch.long)
    upper_pivot = torch.full(x.shape, 255, dtype=torch.long)
    lower_pivot = torch.zeros(x.shape, dtype=torch.long)
    lower = torch.full(x.shape, -1.0, dtype=torch.float32)
    upper = torch.full(x.shape, 1.0, dtype=torch.float32)
    val = code[pivot]
    i = 64
    while i > 0:
        gt = x > val
        lower_pivot = torch.where(gt, pivot, lower_pivot)
        lower = torch.where(gt, val, lower)
        upper_pivot = torch.where(gt, upper_pivot, pivot)
        upper = torch.where(gt, upper, val)
        pivot = torch.where(gt, pivot + i, pivot - i)
        val = code[pivot]
        i >>= 1
    upper = torch.where(upper_pivot == 255, code[255].expand(x.shape), upper)
    lower = torch.where(lower_pivot == 0, code[0].expand(x.shape), lower)
    gt = x > val
    mid_up = (upper + val) * 0.5
    mid_lo = (lower + val) * 0.5
    return torch.where(gt, torch.where(x > mid_up, upper_pivot, pivot),
                       torch.where(x < mid_lo, lower_pivot, pivot))


def _blocks(flat, bs):
    """Zero-pad a float32 1-D tensor to whole blocks (the CUDA kernels load 0 past the end)."""
    n = flat.numel()
    nb = -(-n // bs)
    padded = torch.zeros(nb * bs, dtype=torch.float32)
    padded[:n] = flat
    return padded.view(nb, bs)


def quantize_blockwise_dynamic(v, code, bs=NESTED_BLOCK):
    """bitsandbytes quantize_blockwise (8-bit, dynamic map): absmax per block, x = v * (1/absmax), index by dQuantize."""
    blocks = _blocks(v.reshape(-1).float(), bs)
    absmax = blocks.abs().amax(dim=1)
    x = (blocks * torch.reciprocal(absmax)[:, None]).reshape(-1)[: v.numel()]
    return bnb_dquantize(x, code).to(torch.uint8), absmax


def nf4_codes(w):
    """NF4 codes (uint8, one per element, plus padding to whole 64-blocks) and float32 absmax of a 2-D weight."""
    blocks = _blocks(w.reshape(-1).float(), NF4_BLOCK)
    absmax = blocks.abs().amax(dim=1)
    x = blocks * torch.reciprocal(absmax)[:, None]
    th = torch.tensor(NF4_THRESHOLDS, dtype=torch.float32)
    codes = torch.zeros(x.shape, dtype=torch.uint8)
    for t in th:  # count of thresholds strictly below x  (NaN -> 0 like the kernel)
        codes += (x > t).to(torch.uint8)
    return codes.reshape(-1), absmax


def nf4_encode(w, prefix, dkey, double_quant):
    """Quantize W [out,in] (already in the case dtype) as bitsandbytes does; return the stored tensors."""
    out_f, in_f = w.shape
    n = out_f * in_f
    codes, absmax = nf4_codes(w)
    codes = codes[: 2 * ((n + 1) // 2)]  # odd n: last low nibble is the code of the zero padding (7)
    packed = ((codes[0::2] << 4) | codes[1::2]).to(torch.uint8).reshape(-1, 1)
    qs = {"quant_type": "nf4", "blocksize": NF4_BLOCK, "dtype": BNB_DTYPE[dkey], "shape": [out_f, in_f]}
    t = {prefix + ".weight": packed.contiguous()}
    if double_quant:
        offset = absmax.mean()
        q, absmax2 = quantize_blockwise_dynamic(absmax - offset, DYNAMIC_MAP)
        t[prefix + ".weight.absmax"] = q.contiguous()
        t[prefix + ".weight.quant_map"] = torch.tensor(NF4_CODE, dtype=torch.float32)
        t[prefix + ".weight.nested_absmax"] = absmax2.contiguous()
        t[prefix + ".weight.nested_quant_map"] = DYNAMIC_MAP.clone()
        qs.update({"nested_blocksize": NESTED_BLOCK, "nested_dtype": "float32", "nested_offset": offset.item()})
    else:
        t[prefix + ".weight.absmax"] = absmax.contiguous()
        t[prefix + ".weight.quant_map"] = torch.tensor(NF4_CODE, dtype=torch.float32)
    t[prefix + QSTATE_SUFFIX] = torch.tensor(list(json.dumps(qs).encode("utf-8")), dtype=torch.uint8)
    return t


def quant_state(T, prefix):
    return json.loads(bytes(T[prefix + QSTATE_SUFFIX].tolist()).decode("utf-8"))


def nf4_decode(T, prefix):
    """Dequantize a stored NF4 weight exactly as bitsandbytes does: float32 products, then cast to qs dtype."""
    qs = quant_state(T, prefix)
    out_f, in_f = qs["shape"]
    n, bs = out_f * in_f, qs["blocksize"]
    packed = T[prefix + ".weight"].reshape(-1)
    codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n].long()
    if "nested_offset" in qs:
        q = T[prefix + ".weight.absmax"].long()
        a2 = T[prefix + ".weight.nested_absmax"].float()
        nmap = T[prefix + ".weight.nested_quant_map"].float()
        absmax = nmap[q] * a2[torch.arange(q.numel()) // qs["nested_blocksize"]]
        absmax = absmax + torch.tensor(qs["nested_offset"], dtype=torch.float32)
    else:
        absmax = T[prefix + ".weight.absmax"].float()
    qmap = T[prefix + ".weight.quant_map"].float()
    w = qmap[codes] * absmax[torch.arange(n) // bs]
    dt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[qs["dtype"]]
    return w.to(dt).reshape(out_f, in_f)


DYNAMIC_MAP = create_dynamic_map()

# ----------------------------------------------------------------------------------------------------------
# The LoRA computations
# ----------------------------------------------------------------------------------------------------------


def act_exact(name, e):
    if name == "swiglu":
        return e * torch.sigmoid(e)
    if name == "geglu":
        return 0.5 * e * (1.0 + torch.erf(e / math.sqrt(2.0)))
    if name == "geglu_tanh":
        return 0.5 * e * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (e + 0.044715 * e * e * e)))
    raise ValueError(name)


def act_torch(name, e):
    if name == "swiglu":
        return F.silu(e)
    if name == "geglu":
        return F.gelu(e)
    if name == "geglu_tanh":
        return F.gelu(e, approximate="tanh")
    raise ValueError(name)


def lin(x, W, A, B, s):
    return x @ W.t() + ((x @ A.t()) @ B.t()) * s  # PEFT: base(x) + lora_B(lora_A(x)) * scaling


def forward(op, act, x, P):
    if op in ("matmul_lora", "lora_o"):
        return {"Y": lin(x, *P[PROJ[op][0]])}
    if op == "lora_qkv":
        return {"Q": lin(x, *P["q"]), "K": lin(x, *P["k"]), "V": lin(x, *P["v"])}
    e = lin(x, *P["gate"])
    g = lin(x, *P["up"])
    return {"Y": lin(act(e) * g, *P["down"])}


def dense_weight(T, meta, name):
    return T[name + ".weight"] if meta["quant." + name] == "none" else nf4_decode(T, name)


def evaluate(T, meta, device, cdt, exact):
    """Forward (+ backward with the stored upstream grads) in dtype cdt on device. Returns float64 CPU tensors."""
    op = meta["op"]
    train = op != "matmul_lora"

    def leaf(t):
        t = t.to(device=device, dtype=cdt).clone()
        return t.requires_grad_(True) if train else t

    x = leaf(T["X"])
    P = {}
    for n in PROJ[op]:
        W = dense_weight(T, meta, n).to(device=device, dtype=cdt)
        P[n] = (W, leaf(T[n + ".lora_A"]), leaf(T[n + ".lora_B"]), float(meta["scale." + n]))
    a = meta.get("activation")
    act = (lambda e: act_exact(a, e)) if exact else (lambda e: act_torch(a, e))
    with torch.set_grad_enabled(train):
        outs = forward(op, act, x, P)
        res = {k: v.detach() for k, v in outs.items()}
        if train:
            keys = list(outs)
            torch.autograd.backward([outs[k] for k in keys],
                                    [T["grad." + k].to(device=device, dtype=cdt) for k in keys])
            res["grad.X"] = x.grad
            for n in PROJ[op]:
                res["grad.%s.lora_A" % n] = P[n][1].grad
                res["grad.%s.lora_B" % n] = P[n][2].grad
    return {k: v.detach().to("cpu", torch.float64) for k, v in res.items()}


def rel_err(got, ref):
    """||got - ref|| / ||ref|| in float64, with the edge cases of the Go side's ref.RelErr, so that a broken
    value can never yield a finite torch_err (the loader rejects a non-finite tol): a size mismatch or any
    NaN gives inf; an infinity gives inf unless both hold the same infinity there (such elements are left
    out); ||ref|| = 0 gives 0 when got is zero too, else inf."""
    got, ref = got.double().reshape(-1), ref.double().reshape(-1)
    if got.numel() != ref.numel() or bool(torch.isnan(got).any()) or bool(torch.isnan(ref).any()):
        return math.inf
    inf = torch.isinf(got) | torch.isinf(ref)
    if bool(inf.any()):
        if not torch.equal(got[inf], ref[inf]):
            return math.inf
        got, ref = got[~inf], ref[~inf]
    den = ref.norm().item()
    num = (got - ref).norm().item()
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


# ----------------------------------------------------------------------------------------------------------
# Suites
# ----------------------------------------------------------------------------------------------------------


def C(op, dtype, quant, M, K, N, r, scale, act=None, kv=None, ratio=0.3):
    """K = in (H for mlp), N = out (q out for qkv, intermediate I for mlp); kv = k/v out for qkv."""
    return dict(op=op, act=act, dtype=dtype, quant=quant, M=M, K=K, N=N, kv=kv, r=r, scale=scale, ratio=ratio)


SMALL = [
    C("matmul_lora", "f32", "none", 17, 40, 24, 4, 0.37, ratio=0.25),
    C("matmul_lora", "bf16", "nf4", 17, 40, 24, 7, 2.0, ratio=0.4),  # in=40: NF4 blocks straddle rows
    C("matmul_lora", "f16", "nf4-dq", 33, 96, 80, 8, 16 / math.sqrt(8), ratio=0.2),  # rsLoRA alpha/sqrt(r)
    C("lora_o", "bf16", "nf4", 9, 33, 21, 1, 0.37, ratio=0.45),  # out*in odd: padded last nibble
    C("lora_o", "f16", "none", 32, 64, 64, 8, 2.0, ratio=0.3),
    C("lora_o", "f32", "nf4-dq", 25, 72, 40, 4, 8 / 4, ratio=0.15),
    C("lora_qkv", "bf16", "none", 16, 64, 64, 8, {"q": 2.0, "k": 0.37, "v": 1.25}, kv=32, ratio=0.3),
    C("lora_qkv", "f32", "nf4", 13, 48, 48, 4, 0.37, kv=24, ratio=0.35),
    C("lora_qkv", "f16", "nf4-dq", 20, 80, 80, 7, 16 / math.sqrt(7), kv=80, ratio=0.25),
    C("lora_mlp", "bf16", "nf4", 16, 48, 96, 8, 2.0, act="swiglu", ratio=0.3),
    C("lora_mlp", "f16", "none", 11, 40, 72, 4, {"gate": 0.37, "up": 2.0, "down": 1.5}, act="geglu", ratio=0.4),
    C("lora_mlp", "f32", "nf4-dq", 19, 56, 88, 7, 16 / math.sqrt(7), act="geglu_tanh", ratio=0.2),
    C("lora_mlp", "bf16", {"gate": "nf4-dq", "up": "nf4", "down": "none"}, 7, 24, 40, 1, 0.37,
      act="geglu_tanh", ratio=0.35),
]
MEDIUM = [
    C("matmul_lora", "bf16", "none", 512, 1024, 1024, 16, 2.0, ratio=0.3),
    C("matmul_lora", "f16", "nf4", 1024, 512, 2048, 64, 0.37, ratio=0.2),
    C("lora_o", "bf16", "nf4", 256, 2048, 1000, 64, 16 / 64, ratio=0.35),
    C("lora_o", "f16", "nf4-dq", 384, 1000, 1366, 16, 16 / math.sqrt(16), ratio=0.25),  # partial NF4 + nested blocks
    C("lora_qkv", "bf16", "nf4-dq", 512, 2048, 2048, 16, 2.0, kv=512, ratio=0.3),  # grouped-query attention
    C("lora_qkv", "f32", "none", 256, 1024, 1024, 64, {"q": 0.5, "k": 2.0, "v": 1.0}, kv=1024, ratio=0.3),
    C("lora_mlp", "bf16", "nf4", 512, 1024, 2048, 16, 2.0, act="swiglu", ratio=0.3),
    C("lora_mlp", "f32", "none", 256, 512, 1536, 64, 0.37, act="geglu", ratio=0.2),
    C("lora_mlp", "f16", "nf4-dq", 1024, 768, 2000, 16, 4.0, act="geglu_tanh", ratio=0.4),
]
SUITES = {"small": SMALL, "full": SMALL + MEDIUM}


def per_proj(v, name):
    return v[name] if isinstance(v, dict) else v


def proj_shapes(c):
    op, K, N = c["op"], c["K"], c["N"]
    if op in ("matmul_lora", "lora_o"):
        return {PROJ[op][0]: (N, K)}
    if op == "lora_qkv":
        kv = c["kv"] or N
        return {"q": (N, K), "k": (kv, K), "v": (kv, K)}
    return {"gate": (N, K), "up": (N, K), "down": (K, N)}


def out_dims(c):
    op = c["op"]
    if op == "lora_qkv":
        return {"Q": c["N"], "K": c["kv"] or c["N"], "V": c["kv"] or c["N"]}
    return {"Y": c["K"] if op == "lora_mlp" else c["N"]}


def case_name(c, seed):
    q = c["quant"] if isinstance(c["quant"], str) else "mixed"
    dims = "%dx%dx%d" % (c["M"], c["K"], c["N"])
    if c["op"] == "lora_qkv":
        dims += "_%d" % (c["kv"] or c["N"])
    parts = [c["op"]] + ([c["act"]] if c["op"] == "lora_mlp" else []) + [c["dtype"], q, dims, "r%d" % c["r"], str(seed)]
    return "-".join(parts) + ".safetensors"


def build_case(c, seed, idx, device):
    g = torch.Generator().manual_seed(seed * 1000 + idx)
    dkey = c["dtype"]
    dt = DTYPES[dkey]
    op = c["op"]
    meta = {"op": op}
    if op == "lora_mlp":
        meta["activation"] = c["act"]
    meta.update({"dtype": dkey, "seed": str(seed), "case": str(idx), "generator": "torch " + torch.__version__,
                 "projections": ",".join(PROJ[op])})
    T = {"X": torch.randn(c["M"], c["K"], generator=g).to(dt)}
    info = {}
    for name, (o, i) in proj_shapes(c).items():
        r, s, q = c["r"], float(per_proj(c["scale"], name)), per_proj(c["quant"], name)
        W = (torch.randn(o, i, generator=g) / math.sqrt(i)).to(dt)
        A = (torch.randn(r, i, generator=g) / math.sqrt(i)).to(dt)
        B = (torch.randn(o, r, generator=g) * (c["ratio"] / (s * math.sqrt(r)))).to(dt)
        if q == "none":
            T[name + ".weight"] = W
        else:
            T.update(nf4_encode(W, name, dkey, q == "nf4-dq"))
            info["nf4_rel_err." + name] = rel_err(nf4_decode(T, name), W)
        T[name + ".lora_A"] = A
        T[name + ".lora_B"] = B
        meta["scale." + name] = repr(s)
        meta["quant." + name] = q
    if op != "matmul_lora":
        for k, d in out_dims(c).items():
            T["grad." + k] = torch.randn(c["M"], d, generator=g).to(dt)
    ref = evaluate(T, meta, "cpu", torch.float64, exact=True)
    got = evaluate(T, meta, device, dt, exact=False)
    for k, v in ref.items():
        e = rel_err(got[k], v)
        T["expect." + k] = v.to(torch.float32).contiguous()
        meta["tol.expect." + k] = repr(max(2.0 * e, TOL_FLOOR[dkey]))
        meta["torch_err.expect." + k] = repr(e)
    meta["torch_device"] = device if device == "cpu" else "cuda " + torch.cuda.get_device_name()
    # how big the LoRA term is next to the base term (float64, for the record)
    x64 = T["X"].double()
    for name in PROJ[op]:
        if op == "lora_mlp" and name == "down":
            continue
        W = dense_weight(T, meta, name).double()
        base = x64 @ W.t()
        lora = (x64 @ T[name + ".lora_A"].double().t()) @ T[name + ".lora_B"].double().t() * float(meta["scale." + name])
        info["lora_to_base." + name] = lora.norm().item() / base.norm().item()
    return T, meta, info


def write_case(out, fname, T, meta, info, width):
    """Writes one case file into out and prints its line (name padded to width, size, err/tol of each
    expected tensor); returns its index.json entry. peft_vectors.py writes its cases with it too."""
    path = os.path.join(out, fname)
    save_file({k: v.contiguous() for k, v in T.items()}, path, metadata=meta)
    size = os.path.getsize(path)
    keys = [k[len("tol."):] for k in meta if k.startswith("tol.")]
    errs = " ".join("%s=%.1e/%.1e" % (k[len("expect."):], float(meta["torch_err." + k]), float(meta["tol." + k]))
                    for k in keys)
    print("%-*s %8d B  err/tol: %s" % (width, fname, size, errs), flush=True)
    return {"file": fname, "bytes": size, "metadata": meta, "info": info}


def write_index(out, index, entries, limit):
    """Writes out/index.json: index's fields, then total_bytes and the files' entries; warns past limit."""
    total = sum(e["bytes"] for e in entries)
    index = dict(index, total_bytes=total, files=entries)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print("%d files, %d bytes (%.2f MB) in %s" % (len(entries), total, total / 1e6, out))
    if total > limit:
        print("WARNING: suite larger than %.0f MB" % (limit / 1e6))


def generate(args):
    device = pick_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    entries = []
    names = set()
    for idx, c in enumerate(SUITES[args.suite]):
        fname = case_name(c, args.seed)
        assert fname not in names, fname
        names.add(fname)
        T, meta, info = build_case(c, args.seed, idx, device)
        entries.append(write_case(args.out, fname, T, meta, info, 62))
        for k, v in info.items():
            print("    %s = %.4f" % (k, v))
    index = {"format": "docs/CONFORMANCE.md", "suite": args.suite, "seed": args.seed,
             "generator": "torch " + torch.__version__, "torch_device": entries[0]["metadata"]["torch_device"]}
    write_index(args.out, index, entries, 2e6 if args.suite == "small" else 150e6)
    return 0


def pick_device(d):
    if d == "auto":
        d = "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cuda":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.backends.cuda.matmul.allow_tf32 = False  # torch's default; measure plain fp32 GEMM
            except Exception:
                pass
    return d


# ----------------------------------------------------------------------------------------------------------
# --check
# ----------------------------------------------------------------------------------------------------------


def read_metadata(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)).get("__metadata__", {})


def validate(T, meta):
    """Structural checks of one case against the format. Returns a list of problems."""
    bad = []

    def need(cond, msg):
        if not cond:
            bad.append(msg)

    op, dkey = meta.get("op"), meta.get("dtype")
    if op not in PROJ or dkey not in DTYPES:
        return ["bad op/dtype metadata: %r %r" % (op, dkey)]
    dt = DTYPES[dkey]
    for k in ("seed", "generator"):
        need(k in meta, "metadata %s missing" % k)
    if op == "lora_mlp":
        need(meta.get("activation") in ACTIVATIONS, "bad activation %r" % meta.get("activation"))
    X = T.get("X")
    if X is None:
        return bad + ["X missing"]
    need(X.dtype == dt and X.dim() == 2, "X dtype/rank")
    M = X.shape[0]
    dims = {}
    for n in PROJ[op]:
        A, B = T.get(n + ".lora_A"), T.get(n + ".lora_B")
        if A is None or B is None or ("scale." + n) not in meta or ("quant." + n) not in meta:
            bad.append("projection %s incomplete" % n)
            continue
        need(A.dtype == dt and B.dtype == dt and A.shape[0] == B.shape[1], "%s lora dtype/rank" % n)
        o, i = B.shape[0], A.shape[1]
        dims[n] = (o, i)
        try:
            float(meta["scale." + n])
        except ValueError:
            bad.append("scale.%s not a float" % n)
        q = meta["quant." + n]
        need(q in QUANTS, "quant.%s = %r" % (n, q))
        if q == "none":
            W = T.get(n + ".weight")
            need(W is not None and W.dtype == dt and tuple(W.shape) == (o, i), "%s.weight dense dtype/shape" % n)
            continue
        if (n + QSTATE_SUFFIX) not in T:
            bad.append("%s quant_state missing" % n)
            continue
        qs = quant_state(T, n)
        nel = o * i
        nb = -(-nel // NF4_BLOCK)
        need(qs.get("quant_type") == "nf4" and qs.get("blocksize") == NF4_BLOCK and qs.get("dtype") == BNB_DTYPE[dkey]
             and qs.get("shape") == [o, i], "%s quant_state %r" % (n, qs))
        W = T.get(n + ".weight")
        need(W is not None and W.dtype == torch.uint8 and tuple(W.shape) == ((nel + 1) // 2, 1), "%s.weight packed" % n)
        qm = T.get(n + ".weight.quant_map")
        need(qm is not None and qm.dtype == torch.float32 and qm.tolist() == NF4_CODE, "%s quant_map" % n)
        am = T.get(n + ".weight.absmax")
        if q == "nf4":
            need(am is not None and am.dtype == torch.float32 and tuple(am.shape) == (nb,), "%s absmax" % n)
            need("nested_offset" not in qs and (n + ".weight.nested_absmax") not in T, "%s unexpected nested" % n)
        else:
            need(am is not None and am.dtype == torch.uint8 and tuple(am.shape) == (nb,), "%s absmax (uint8)" % n)
            na, nm = T.get(n + ".weight.nested_absmax"), T.get(n + ".weight.nested_quant_map")
            need(na is not None and na.dtype == torch.float32 and tuple(na.shape) == (-(-nb // NESTED_BLOCK),),
                 "%s nested_absmax" % n)
            need(nm is not None and nm.dtype == torch.float32 and torch.equal(nm, DYNAMIC_MAP), "%s nested_quant_map" % n)
            need(qs.get("nested_blocksize") == NESTED_BLOCK and qs.get("nested_dtype") == "float32"
                 and isinstance(qs.get("nested_offset"), float), "%s nested quant_state %r" % (n, qs))
    if bad:
        return bad
    K = X.shape[1]
    if op == "lora_mlp":
        need(dims["gate"] == dims["up"] and dims["gate"][1] == K and dims["down"] == (K, dims["gate"][0]), "mlp dims")
    else:
        need(all(d[1] == K for d in dims.values()), "in dims")
    outs = {"Y": dims["down"][0]} if op == "lora_mlp" else (
        {"Q": dims["q"][0], "K": dims["k"][0], "V": dims["v"][0]} if op == "lora_qkv" else {"Y": dims[PROJ[op][0]][0]})
    want = {"expect." + k: (M, d) for k, d in outs.items()}
    if op != "matmul_lora":
        for k, d in outs.items():
            gr = T.get("grad." + k)
            need(gr is not None and gr.dtype == dt and tuple(gr.shape) == (M, d), "grad.%s" % k)
        want["expect.grad.X"] = (M, K)
        for n, (o, i) in dims.items():
            want["expect.grad.%s.lora_A" % n] = tuple(T[n + ".lora_A"].shape)
            want["expect.grad.%s.lora_B" % n] = tuple(T[n + ".lora_B"].shape)
    have = {k for k in T if k.startswith("expect.")}
    need(have == set(want), "expect.* set differs: extra %s missing %s" % (sorted(have - set(want)), sorted(set(want) - have)))
    for k, shp in want.items():
        if k in T:
            need(T[k].dtype == torch.float32 and tuple(T[k].shape) == shp, "%s dtype/shape" % k)
        tk, ek = "tol." + k, "torch_err." + k
        if tk not in meta or ek not in meta:
            bad.append("%s or %s missing" % (tk, ek))
            continue
        tol, err = float(meta[tk]), float(meta[ek])
        need(tol >= TOL_FLOOR[dkey] and abs(tol - max(2 * err, TOL_FLOOR[dkey])) <= 1e-12 * max(tol, 1.0), "%s value" % tk)
    return bad


def check_file(path, validate_fn=None, recompute=None, what="the float64 recomputation", label="recomputed reference"):
    """Checks one file: its structure (validate_fn, default validate) and its expect.* against a float64
    recomputation (recompute(T, meta) -> {name: tensor}, default this file's reference). peft_vectors.py
    passes its own validation and PEFT's recomputation; what and label name it in the messages."""
    validate_fn = validate_fn or validate
    recompute = recompute or (lambda T, meta: evaluate(T, meta, "cpu", torch.float64, exact=True))
    meta = read_metadata(path)
    T = load_file(path)
    bad = validate_fn(T, meta)
    worst = 0.0
    if not bad:
        ref = recompute(T, meta)
        for k, v in ref.items():
            e = rel_err(T["expect." + k], v)
            worst = max(worst, e)
            if not e <= CHECK_TOL:
                bad.append("expect.%s differs from %s: rel err %.3e" % (k, what, e))
    print("%s %s  (max rel err vs %s %.2e)" % ("OK  " if not bad else "FAIL", path, label, worst))
    for b in bad:
        print("     " + b)
    return not bad


def check(paths, check_one=check_file):
    """Checks every file named, or in a directory named, with check_one; 0 when all pass."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".safetensors"))
        else:
            files.append(p)
    ok = sum(check_one(f) for f in files)
    print("%d/%d files pass" % (ok, len(files)))
    return 0 if files and ok == len(files) else 1


# ----------------------------------------------------------------------------------------------------------
# --selftest: the NF4 / double-quant encoder and decoder
# ----------------------------------------------------------------------------------------------------------


def selftest():
    fails = []

    def expect(cond, msg):
        print(("ok    " if cond else "FAIL  ") + msg)
        if not cond:
            fails.append(msg)

    code = torch.tensor(NF4_CODE, dtype=torch.float32)
    th = torch.tensor(NF4_THRESHOLDS, dtype=torch.float32)
    mids = ((code[:-1].double() + code[1:].double()) / 2)
    expect(bool(((th.double() - mids).abs() <= 2.0 ** -24 * mids.abs().clamp_min(2.0 ** -5)).all()),
           "NF4 thresholds are the float32 midpoints of adjacent table entries (within 1 ulp)")
    # table round trip: each table value times a power-of-two absmax maps to its own code and decodes exactly
    vals = torch.cat([code, code.flip(0)] * 2) * 0.5  # 64 values = one block, absmax 0.5
    w = vals.reshape(4, 16)
    codes, absmax = nf4_codes(w)
    ref_codes = torch.cat([torch.arange(16), torch.arange(15, -1, -1)] * 2).to(torch.uint8)
    expect(torch.equal(codes, ref_codes) and absmax.item() == 0.5, "code table round trip")
    expect(torch.equal(nf4_decode(nf4_encode(w, "p", "f32", False), "p"), w), "decode of table values is exact")
    # packing order: even element in the high nibble
    w = (torch.tensor([1.0, -1.0, 0.0, 0.0796, 0.44, -0.2844] + [0.0] * 58) * 0.25).reshape(8, 8)
    t = nf4_encode(w, "p", "f32", False)
    b = t["p.weight"].reshape(-1)[:3].tolist()
    expect(b == [0xF0, 0x78, 0xC4], "packing: byte j = code[2j] << 4 | code[2j+1]  (got %s)" % [hex(v) for v in b])
    # odd element count: the last low nibble is the code of 0 (7), shape [(n+1)//2, 1]
    w = torch.tensor([[0.5, -0.25, 0.125]])
    t = nf4_encode(w, "p", "f32", False)
    pk = t["p.weight"]
    expect(tuple(pk.shape) == (2, 1) and (pk[1, 0].item() & 15) == 7, "odd n: padding nibble is 7, shape (2,1)")
    # dynamic map
    dm = DYNAMIC_MAP
    expect(dm.numel() == 256 and bool((dm[1:] > dm[:-1]).all()), "dynamic map: 256 strictly increasing values")
    expect(dm[127].item() == 0.0 and dm[255].item() == 1.0 and dm[0].item() == -dm[254].item(),
           "dynamic map: [127]=0, [255]=1, [0]=-[254] (%r, %r)" % (dm[0].item(), dm[254].item()))
    expect(abs(dm[254].item() - 0.99296875) < 1e-6 and abs(dm[128].item() - 5.5e-7) < 1e-12,
           "dynamic map: largest fraction %.8f, smallest positive %.3e" % (dm[254].item(), dm[128].item()))
    # 8-bit binary search == nearest map entry
    g = torch.Generator().manual_seed(1)
    x = torch.cat([dm, torch.rand(50000, generator=g) * 2 - 1, (torch.rand(10000, generator=g) * 2 - 1) * 1e-3])
    q = bnb_dquantize(x, dm)
    expect(torch.equal(q[:256], torch.arange(256)), "8-bit quantizer maps every map value to itself")
    d = (x[:, None].double() - dm[None, :].double()).abs()
    nearest_dist = d.min(dim=1).values
    chosen_dist = d.gather(1, q[:, None]).squeeze(1)
    nbad = int((chosen_dist > nearest_dist).sum())
    expect(nbad == 0, "8-bit quantizer picks a nearest map entry (%d of %d not)" % (nbad, x.numel()))
    # random normal weights: NF4 error, codes = nearest table entry, double quant
    for dkey, shape in (("f32", (257, 100)), ("bf16", (96, 40)), ("f16", (1000, 300))):
        W = (torch.randn(*shape, generator=g) / math.sqrt(shape[1])).to(DTYPES[dkey])
        codes, absmax = nf4_codes(W)
        n = W.numel()
        xs = (_blocks(W.reshape(-1).float(), NF4_BLOCK) * torch.reciprocal(absmax)[:, None]).reshape(-1)[:n]
        dd = (xs[:, None].double() - code[None, :].double()).abs()
        nbad = int((dd.gather(1, codes[:n, None].long()).squeeze(1) > dd.min(dim=1).values).sum())
        expect(nbad == 0, "NF4 codes are a nearest table entry (%s %s, %d not)" % (dkey, shape, nbad))
        t1 = nf4_encode(W, "p", dkey, False)
        t2 = nf4_encode(W, "p", dkey, True)
        W1, W2 = nf4_decode(t1, "p"), nf4_decode(t2, "p")
        e1, e2 = rel_err(W1, W), rel_err(W2, W)
        expect(0.05 < e1 < 0.15 and abs(e2 - e1) < 0.02 * e1 + 1e-3,
               "dequant(quant(W)) rel err %s %s: nf4 %.4f, nf4-dq %.4f" % (dkey, shape, e1, e2))
        unpacked = torch.stack([t1["p.weight"].reshape(-1) >> 4, t1["p.weight"].reshape(-1) & 15], 1).reshape(-1)[:n]
        expect(torch.equal(unpacked, codes[:n]), "unpack(pack(codes)) == codes (%s)" % dkey)
        qs2 = quant_state(t2, "p")
        am2 = (DYNAMIC_MAP[t2["p.weight.absmax"].long()] * t2["p.weight.nested_absmax"][
            torch.arange(absmax.numel()) // NESTED_BLOCK]) + torch.tensor(qs2["nested_offset"], dtype=torch.float32)
        ae = ((am2 - absmax).abs() / absmax).max().item()
        expect(ae < 0.02, "double-quant absmax max rel err %.2e (%d blocks)" % (ae, absmax.numel()))
        expect(qs2["dtype"] == BNB_DTYPE[dkey] and qs2["shape"] == list(shape) and qs2["nested_blocksize"] == 256,
               "quant_state json %s" % json.dumps(qs2))
    # a case with several nested blocks, the last one partial
    W = (torch.randn(300, 200, generator=g) / math.sqrt(200)).to(torch.bfloat16)  # 937.5 -> 938 blocks, 4 nested
    t2 = nf4_encode(W, "p", "bf16", True)
    expect(tuple(t2["p.weight.nested_absmax"].shape) == (4,) and tuple(t2["p.weight.absmax"].shape) == (938,),
           "nested shapes for 60000 elements: absmax (938,), nested_absmax (4,)")
    print("selftest: %s" % ("PASS" if not fails else "%d FAILED" % len(fails)))
    return 0 if not fails else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suite", choices=sorted(SUITES), default="small")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where torch runs the case-dtype computation that sets torch_err/tol")
    ap.add_argument("--check", nargs="+", metavar="FILE", help="verify files (or directories of files)")
    ap.add_argument("--selftest", action="store_true", help="check the NF4 / double-quant encoder and decoder")
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    if a.check:
        return check(a.check)
    if not a.out:
        ap.error("--out DIR is required (or --check / --selftest)")
    return generate(a)


if __name__ == "__main__":
    sys.exit(main())
