#!/usr/bin/env python3
"""Conformance vectors for PEFT's LoRA extensions, made by PEFT itself: LoRA dropout, the lora_B bias
(`lora_bias=True`), a trainable base bias (`bias="all"` / `"lora_only"`) and DoRA (`use_dora=True`), on the
ops of docs/CONFORMANCE.md (matmul_lora, lora_o, lora_qkv, lora_mlp with swiglu / geglu / geglu_tanh), in
f32, f16 and bf16, with dense or NF4 base weights. The files have make_vectors.py's format plus the keys of
docs/CONFORMANCE.md's section "Extensions"; `go test ./conformance/ -run TestPEFTSmallSuiteOnDevice` runs
testdata/peft-small, `lorabench check DIR` any directory of them.

How a case is made:
  1. Inputs are drawn as make_vectors.py draws them (torch.randn with a generator seeded seed*1000 + case,
     rounded to the case dtype; NF4 weights quantized by make_vectors.py's encoder), plus biases, the lora_B
     bias and a DoRA magnitude m = ||W + s*B*A||_row * U(0.6, 1.4) (so m/||.|| != 1). lora_B is random and
     non-zero (PEFT initialises it to zero, which would hide dA).
  2. A small torch module holds nn.Linear layers named like the case's projections (w | o | q,k,v |
     gate,up,down). peft.get_peft_model wraps them with a real LoraConfig(r, lora_alpha, use_rslora,
     lora_dropout, lora_bias, use_dora, bias, alpha_pattern); the module, converted to the compute dtype, gets
     the stored values copied into PEFT's own parameters (base_layer.weight/.bias, lora_A/lora_B weights,
     lora_B.bias, lora_magnitude_vector). The scale written to the file is PEFT's own `layer.scaling`.
     An NF4 base weight enters PEFT as the plain nn.Linear weight that dequantizes to (what
     bitsandbytes' Linear4bit computes with); the file carries the packed NF4 tensors.
  3. Dropout mask capture: PEFT puts an nn.Dropout(p) in `layer.lora_dropout["default"]`. Its mask is drawn
     once by calling that very module (train mode, torch's CPU generator seeded from seed, case and
     projection) on a tensor of ones: the kept elements come out as 1/(1-p) (checked), the dropped as 0.
     The module is then replaced by RecordedDropout, which applies that 0/1 mask with inverted scaling the
     way torch's dropout does (x * (mask / (1-p)) in x's dtype), counts its calls and checks its input
     shape. PEFT's Linear.forward and its DoRA variant call it exactly as they would call nn.Dropout (the
     DoRA variant takes its "recompute the base on dropout(x)" path because the module is not nn.Identity,
     as with real dropout). `dropout_mask=shared` cases give q, k, v one mask and gate, up one (the mask
     drawn for q, resp. gate); `per_projection` (PEFT's behaviour) draws one per projection.
  4. Expected values: PEFT's forward in float64 on the CPU in train mode (the MLP activation in its exact
     float64 form, as make_vectors.py), then torch.autograd.backward with the stored upstream gradients;
     every expect.* is a .grad (or output) of that PEFT model, rounded to float32: X, lora_A, lora_B,
     lora_B.bias, lora_magnitude_vector.weight and base_layer.bias (only when PEFT marked it trainable).
  5. torch_err: the same PEFT model built in the case dtype on the GPU (the activation through torch.nn.functional)
     against the float64 result; tol = max(2 * torch_err, floor[dtype]), the rule and floors of
     make_vectors.py.

Usage (from the repository root, on a machine with torch >= 2.0, peft 0.21.x and safetensors):
  python3 conformance/gen/peft_vectors.py --small --out testdata/peft-small [--seed 1]
  python3 conformance/gen/peft_vectors.py --out DIR [--seed N] [--device auto|cpu|cuda]    (the larger suite)
  python3 conformance/gen/peft_vectors.py --check FILE_OR_DIR ...   rebuild each case's PEFT model in float64 from
                                                                    the stored tensors and compare to expect.*
  python3 conformance/gen/peft_vectors.py --list [--small]          the case names only (needs only torch)

It imports make_vectors.py (beside it) for the dtype tables, the tolerance floors, the NF4 encoder/decoder and
rel_err, so both files travel together. A PEFT other than 0.21.x is refused unless --any-peft is given.
"""
import argparse
import json
import math
import os
import sys
import warnings

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
PEFT_SERIES = (0, 21)
MIN_TORCH = (2, 0)

PROJ = {"matmul_lora": ["w"], "lora_o": ["o"], "lora_qkv": ["q", "k", "v"], "lora_mlp": ["gate", "up", "down"]}
SHARED_GROUPS = {"lora_qkv": [["q", "k", "v"]], "lora_mlp": [["gate", "up"], ["down"]]}
BIAS_MODES = ("none", "frozen", "all", "lora_only")  # case spec; metadata bias.P is none / frozen / trainable


def _mv():
    """make_vectors.py, the plain-vector generator beside this file (imported lazily: it needs safetensors)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import make_vectors  # noqa: E402

    return make_vectors


def _version_tuple(v):
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
        if not part.isdigit():
            break
    return tuple(out)


def import_peft(any_peft):
    """Import peft, check the versions and the one PEFT refusal the format relies on; fail loudly."""
    if _version_tuple(torch.__version__)[:2] < MIN_TORCH:
        sys.exit("peft_vectors.py: torch %s is too old (need >= %d.%d)" % ((torch.__version__,) + MIN_TORCH))
    try:
        import peft
        from peft import LoraConfig, get_peft_model
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError as e:
        sys.exit("peft_vectors.py: cannot import peft (%s); install peft 0.21" % e)
    if _version_tuple(peft.__version__)[:2] != PEFT_SERIES and not any_peft:
        sys.exit("peft_vectors.py: peft %s found, the vectors are specified against peft %d.%d.x "
                 "(pass --any-peft to use it anyway; the files record the version)" % ((peft.__version__,) + PEFT_SERIES))
    try:
        LoraConfig(r=2, lora_alpha=2, target_modules=["o"], use_dora=True, lora_bias=True)
    except ValueError:
        pass
    else:
        sys.exit("peft_vectors.py: this peft accepts use_dora with lora_bias; the format assumes it refuses them")
    return peft, LoraConfig, get_peft_model, LoraLinear


# ----------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------


def F(dropout=0.0, lora_bias=False, dora=False, bias="none"):
    """A feature mix, uniform over the case's projections as one LoraConfig makes it. bias: none (the base
    layers have none), frozen (they have one, LoraConfig bias="none"), all / lora_only (trainable)."""
    assert bias in BIAS_MODES, bias
    assert not (dora and lora_bias), "PEFT refuses use_dora with lora_bias"
    assert 0.0 <= dropout < 1.0
    return dict(dropout=float(dropout), lora_bias=lora_bias, dora=dora, bias=bias)


def C(op, dtype, quant, M, K, N, r, alpha, feats, act=None, kv=None, rslora=False, alpha_pattern=None,
      mask="per_projection", bias_on=None, ratio=0.3):
    """K = in (H for mlp), N = out (q's out for qkv, intermediate I for mlp); kv = k/v out for qkv.
    bias_on: the projections whose base layer has a bias (default all) when feats['bias'] != 'none'."""
    assert mask in ("per_projection", "shared")
    if op == "matmul_lora":
        assert feats["bias"] in ("none", "frozen"), "matmul_lora has no backward: a trainable bias means nothing"
    return dict(op=op, act=act, dtype=dtype, quant=quant, M=M, K=K, N=N, kv=kv, r=r, alpha=alpha, rslora=rslora,
                alpha_pattern=alpha_pattern or {}, feats=feats, mask=mask, bias_on=bias_on, ratio=ratio)


SMALL = [
    C("matmul_lora", "f32", "none", 17, 40, 24, 3, 1.11, F(dropout=0.15, lora_bias=True, bias="frozen")),
    C("matmul_lora", "bf16", "nf4", 17, 40, 24, 6, 12, F(dropout=0.2, dora=True)),  # NF4 blocks straddle rows
    C("matmul_lora", "f16", "none", 12, 33, 20, 5, 8, F(dora=True, bias="frozen"), rslora=True),
    C("lora_o", "f16", "none", 21, 48, 40, 5, 10, F(dropout=0.1, lora_bias=True, bias="all")),
    C("lora_o", "bf16", "nf4", 9, 33, 21, 3, 1.11, F(dora=True, bias="frozen"), ratio=0.45),  # out*in odd
    C("lora_o", "f32", "nf4-dq", 25, 72, 40, 7, 14, F(dropout=0.25, dora=True, bias="lora_only")),
    C("lora_o", "bf16", "none", 16, 40, 56, 4, 6, F(bias="all")),
    C("lora_qkv", "bf16", "none", 16, 64, 64, 6, 12, F(dropout=0.1, lora_bias=True, bias="all"), kv=32,
      alpha_pattern={"k": 2.22, "v": 7.5}),
    C("lora_qkv", "f32", "none", 13, 48, 48, 5, 16, F(dropout=0.2, dora=True), kv=24, rslora=True, mask="shared"),
    C("lora_qkv", "f16", "nf4", 20, 80, 80, 3, 6, F(dora=True, bias="frozen"), kv=40, bias_on=["q"]),
    C("lora_qkv", "f32", "nf4-dq", 11, 40, 40, 7, 3, F(dropout=0.3, lora_bias=True), kv=16, mask="shared"),
    C("lora_mlp", "bf16", "none", 16, 48, 96, 6, 12, F(dropout=0.1, dora=True), act="swiglu"),
    C("lora_mlp", "f16", "nf4", 11, 40, 72, 5, 10, F(dropout=0.2, lora_bias=True, bias="all"), act="geglu",
      mask="shared"),
    C("lora_mlp", "f32", "none", 19, 56, 88, 7, 16, F(dora=True, bias="lora_only"), act="geglu_tanh", rslora=True),
    C("lora_mlp", "f32", {"gate": "nf4-dq", "up": "nf4", "down": "none"}, 7, 24, 40, 3, 1.11,
      F(dropout=0.25, dora=True, bias="frozen"), act="swiglu", mask="shared", bias_on=["gate", "down"]),
    C("lora_mlp", "bf16", "nf4", 9, 32, 56, 5, 10, F(dropout=0.15, lora_bias=True, bias="frozen"), act="geglu_tanh"),
]

# The larger suite: every op (and MLP activation) x every feature mix x every dtype, the base weights cycling
# through none / nf4 / nf4-dq and the mask mode alternating, at moderate odd shapes; plus a few larger cases.
MIXES = [
    F(dropout=0.1),
    F(lora_bias=True, bias="frozen"),
    F(dora=True),
    F(dropout=0.2, dora=True),
    F(bias="all"),
    F(dropout=0.15, lora_bias=True, bias="lora_only"),
    F(dropout=0.1, dora=True, bias="all"),
    F(dora=True, bias="frozen"),
    F(lora_bias=True),  # lora_B bias on layers without a base bias (PEFT warns: not mergeable)
]
OPS = [("matmul_lora", None), ("lora_o", None), ("lora_qkv", None), ("lora_mlp", "swiglu"), ("lora_mlp", "geglu"),
       ("lora_mlp", "geglu_tanh")]
SHAPES = {  # per dtype index: (M, K, N, kv, r, alpha, rslora)
    "matmul_lora": [(33, 96, 80, None, 5, 10, False), (64, 72, 136, None, 12, 16, True), (47, 128, 100, None, 3, 1.11, False)],
    "lora_o": [(33, 96, 80, None, 7, 14, False), (64, 136, 72, None, 5, 16, True), (41, 100, 128, None, 12, 6, False)],
    "lora_qkv": [(33, 96, 96, 32, 6, 12, False), (40, 128, 128, 48, 5, 16, True), (29, 80, 80, 80, 7, 3, False)],
    "lora_mlp": [(33, 64, 152, None, 5, 10, False), (40, 96, 200, None, 7, 16, True), (27, 80, 176, None, 12, 6, False)],
}
DTYPE_ORDER = ["f32", "f16", "bf16"]
QUANT_ORDER = ["none", "nf4", "nf4-dq"]


def full_suite():
    cases = []
    for oi, (op, act) in enumerate(OPS):
        for mi, mix in enumerate(MIXES):
            feats = dict(mix)
            if op == "matmul_lora" and feats["bias"] in ("all", "lora_only"):
                feats["bias"] = "frozen"
            for di, dkey in enumerate(DTYPE_ORDER):
                M, K, N, kv, r, alpha, rs = SHAPES[op][di]
                q = QUANT_ORDER[(oi + mi + di) % 3]
                mask = "shared" if (op in SHARED_GROUPS and (mi + di) % 2 == 1 and feats["dropout"] > 0) else "per_projection"
                cases.append(C(op, dkey, q, M + mi, K, N, r, alpha, feats, act=act, kv=kv, rslora=rs, mask=mask))
    cases += [
        C("lora_mlp", "bf16", "nf4", 256, 512, 1376, 16, 32, F(dropout=0.1, dora=True, bias="frozen"), act="swiglu",
          mask="shared"),
        C("lora_qkv", "f16", "nf4-dq", 128, 1024, 1024, 12, 24, F(dropout=0.05, lora_bias=True, bias="all"), kv=256),
        C("lora_o", "f32", "none", 200, 768, 768, 24, 16, F(dropout=0.1, dora=True, bias="lora_only"), rslora=True),
        C("lora_mlp", "f16", "none", 96, 384, 1000, 8, 16, F(dropout=0.3, lora_bias=True, bias="all"), act="geglu_tanh"),
        C("matmul_lora", "bf16", "nf4-dq", 160, 640, 1000, 16, 32, F(dora=True, bias="frozen")),
    ]
    return cases


def suite(name):
    return SMALL if name == "small" else full_suite()


# A case's per-projection values, weight shapes and output widths: make_vectors.py's.
def per_proj(v, name):
    return _mv().per_proj(v, name)


def proj_shapes(c):
    return _mv().proj_shapes(c)


def out_dims(c):
    return _mv().out_dims(c)


def has_bias(c, name):
    return c["feats"]["bias"] != "none" and (c["bias_on"] is None or name in c["bias_on"])


def bias_meta(c, name):
    if not has_bias(c, name):
        return "none"
    return "frozen" if c["feats"]["bias"] == "frozen" else "trainable"


def feature_tag(c):
    f = c["feats"]
    parts = []
    if f["dropout"] > 0:
        parts.append("drop" + ("shared" if c["mask"] == "shared" else ""))
    if f["lora_bias"]:
        parts.append("lbias")
    if f["dora"]:
        parts.append("dora")
    if f["bias"] != "none":
        parts.append("tbias" if f["bias"] in ("all", "lora_only") else "bias")
        if c["bias_on"] is not None:
            parts[-1] += "." + ".".join(c["bias_on"])
    return "_".join(parts) or "plain"


def case_name(c, seed):
    q = c["quant"] if isinstance(c["quant"], str) else "mixed"
    dims = "%dx%dx%d" % (c["M"], c["K"], c["N"])
    if c["op"] == "lora_qkv":
        dims += "_%d" % (c["kv"] or c["N"])
    parts = [c["op"]] + ([c["act"]] if c["op"] == "lora_mlp" else []) + [c["dtype"], q, dims, "r%d" % c["r"],
                                                                          feature_tag(c), str(seed)]
    return "-".join(parts) + ".safetensors"


# ----------------------------------------------------------------------------------------------------------
# The torch module PEFT adapts, and the recorded dropout
# ----------------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """nn.Linear layers named like the case's projections; forward is the op of docs/CONFORMANCE.md."""

    def __init__(self, op, shapes, biases, act):
        super().__init__()
        self.op, self.act = op, act
        for name, (o, i) in shapes.items():
            setattr(self, name, nn.Linear(i, o, bias=biases[name]))

    def forward(self, x):
        if self.op in ("matmul_lora", "lora_o"):
            return {"Y": getattr(self, PROJ[self.op][0])(x)}
        if self.op == "lora_qkv":
            return {"Q": self.q(x), "K": self.k(x), "V": self.v(x)}
        return {"Y": self.down(self.act(self.gate(x)) * self.up(x))}


class RecordedDropout(nn.Module):
    """Inverted dropout with a fixed 0/1 mask, in place of PEFT's nn.Dropout: x * (mask / (1 - p)) in x's
    dtype (torch's dropout multiplies by noise = bernoulli(1 - p) / (1 - p) in the input's dtype)."""

    def __init__(self, mask, p):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        self.p = p
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if tuple(x.shape) != tuple(self.mask.shape):
            raise RuntimeError("RecordedDropout: input %s, mask %s" % (tuple(x.shape), tuple(self.mask.shape)))
        if not self.training:
            raise RuntimeError("RecordedDropout called in eval mode: the vectors are made in train mode")
        return x * self.mask.to(x.dtype).div(1.0 - self.p)


def draw_mask(module, p, shape, seed):
    """The keep mask of PEFT's own nn.Dropout(p) on a [shape] input: the module applied, in train mode, to
    ones with torch's CPU generator seeded (its state restored afterwards)."""
    if not isinstance(module, nn.Dropout) or abs(module.p - p) > 1e-12:
        raise RuntimeError("PEFT's lora_dropout is %r, expected nn.Dropout(p=%r)" % (module, p))
    module.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = module(torch.ones(*shape, dtype=torch.float64))
    kept = probe != 0
    if not torch.allclose(probe[kept], torch.full_like(probe[kept], 1.0 / (1.0 - p)), rtol=1e-12, atol=0):
        raise RuntimeError("PEFT's dropout is not inverted dropout with scale 1/(1-p)")
    return kept.to(torch.uint8)


def mask_shape(T, name):
    """[M, in of the projection]: for down, in is I (its input is h)."""
    return (T["X"].shape[0], T[name + ".lora_A"].shape[1])


# ----------------------------------------------------------------------------------------------------------
# Building PEFT's model from the stored tensors, running it
# ----------------------------------------------------------------------------------------------------------


class Peft:
    """The imported peft pieces."""

    def __init__(self, any_peft):
        self.mod, self.LoraConfig, self.get_peft_model, self.LoraLinear = import_peft(any_peft)
        self.version = self.mod.__version__


def lora_config(P, kwargs):
    """The case's LoraConfig: metadata peft_config holds its keyword arguments."""
    return P.LoraConfig(**kwargs)


def peft_layers(P, model, names):
    """PEFT's LoRA Linear of each projection name (base_model.model.<name>), checked."""
    found = {}
    for full, m in model.named_modules():
        short = full.split(".")[-1]
        if short in names and isinstance(m, P.LoraLinear):
            if short in found:
                raise RuntimeError("two PEFT layers named %s" % short)
            found[short] = m
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError("PEFT did not wrap %s in a lora Linear" % missing)
    return found


def build(P, T, meta, device, cdt, exact, mask_seed=None):
    """PEFT's model of a case in dtype cdt on device, holding the stored values of T. With mask_seed set, the
    dropout masks are drawn from PEFT's own nn.Dropout modules and stored into T (float64 build only); else
    they are read from T. Returns (peft_model, layers, recorded dropouts)."""
    mv = _mv()
    op = meta["op"]
    names = PROJ[op]
    config = json.loads(meta["peft_config"])
    shapes = {n: (T[n + ".lora_B"].shape[0], T[n + ".lora_A"].shape[1]) for n in names}
    biases = {n: meta["bias." + n] != "none" for n in names}
    a = meta.get("activation")
    act = (lambda e: mv.act_exact(a, e)) if exact else (lambda e: mv.act_torch(a, e))
    block = Block(op, shapes, biases, act)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lora_bias without a base bias: PEFT warns that it cannot merge
        model = P.get_peft_model(block, lora_config(P, config), autocast_adapter_dtype=False)
    model = model.to(device=device, dtype=cdt)
    layers = peft_layers(P, model, names)
    drops = {}
    with torch.no_grad():
        for n in names:
            L = layers[n]
            s = float(meta["scale." + n])
            if L.scaling["default"] != s:
                raise RuntimeError("PEFT's scaling of %s is %r, the file says %r" % (n, L.scaling["default"], s))
            W = dense_weight(T, meta, n)
            L.base_layer.weight.copy_(W.to(device=device, dtype=cdt))
            if biases[n]:
                L.base_layer.bias.copy_(T[n + ".bias"].to(device=device, dtype=cdt))
            L.lora_A["default"].weight.copy_(T[n + ".lora_A"].to(device=device, dtype=cdt))
            L.lora_B["default"].weight.copy_(T[n + ".lora_B"].to(device=device, dtype=cdt))
            if meta["lora_bias." + n] == "1":
                L.lora_B["default"].bias.copy_(T[n + ".lora_B.bias"].to(device=device, dtype=cdt))
            elif L.lora_B["default"].bias is not None:
                raise RuntimeError("%s: PEFT made a lora_B bias the case does not have" % n)
            if meta["dora." + n] == "1":
                if "default" not in L.lora_magnitude_vector:
                    raise RuntimeError("%s: PEFT made no DoRA magnitude" % n)
                L.lora_magnitude_vector["default"].weight.copy_(T[n + ".lora_magnitude"].to(device=device, dtype=cdt))
            elif "default" in L.lora_magnitude_vector:
                raise RuntimeError("%s: PEFT made a DoRA magnitude the case does not have" % n)
    # Dropout: draw (generation) or read the masks, then put RecordedDropout in PEFT's place.
    groups = SHARED_GROUPS.get(op) if meta["dropout_mask"] == "shared" else None
    groups = groups or [[n] for n in names]
    for gi, group in enumerate(groups):
        for j, n in enumerate(group):
            p = float(meta["dropout." + n])
            cur = layers[n].lora_dropout["default"]
            if p == 0.0:
                if not isinstance(cur, nn.Identity):
                    raise RuntimeError("%s: dropout 0 but PEFT's lora_dropout is %r" % (n, cur))
                continue
            if not isinstance(cur, nn.Dropout) or abs(cur.p - p) > 1e-12:
                raise RuntimeError("%s: PEFT's lora_dropout is %r, expected nn.Dropout(p=%r)" % (n, cur, p))
            key = n + ".dropout_mask"
            if mask_seed is not None:
                if j == 0:
                    T[key] = draw_mask(cur, p, mask_shape(T, n), mask_seed * 64 + gi)
                else:
                    T[key] = T[group[0] + ".dropout_mask"].clone()
            rd = RecordedDropout(T[key], p).to(device)
            layers[n].lora_dropout["default"] = rd
            drops[n] = rd
    model.train()
    return model, layers, drops


def dense_weight(T, meta, name):
    mv = _mv()
    return T[name + ".weight"] if meta["quant." + name] == "none" else mv.nf4_decode(T, name)


def evaluate(P, T, meta, device, cdt, exact, mask_seed=None):
    """PEFT's forward and (for training ops) backward of the case in dtype cdt on device. Returns float64 CPU
    tensors keyed like expect.* (without the prefix)."""
    op = meta["op"]
    train = op != "matmul_lora"
    model, layers, drops = build(P, T, meta, device, cdt, exact, mask_seed)
    x = T["X"].to(device=device, dtype=cdt).clone().requires_grad_(train)
    with torch.set_grad_enabled(train):
        outs = model(x)
        res = {k: v.detach() for k, v in outs.items()}
        if train:
            keys = list(outs)
            torch.autograd.backward([outs[k] for k in keys], [T["grad." + k].to(device=device, dtype=cdt) for k in keys])
    for n, d in drops.items():
        if d.calls != 1:
            raise RuntimeError("%s: PEFT called its lora_dropout %d times in one forward, expected once" % (n, d.calls))
    if train:
        res["grad.X"] = x.grad
        for n in PROJ[op]:
            L = layers[n]
            got = {"lora_A": L.lora_A["default"].weight, "lora_B": L.lora_B["default"].weight}
            if meta["lora_bias." + n] == "1":
                got["lora_B.bias"] = L.lora_B["default"].bias
            if meta["dora." + n] == "1":
                got["lora_magnitude"] = L.lora_magnitude_vector["default"].weight
            trainable = meta["bias." + n] == "trainable"
            if meta["bias." + n] != "none":
                b = L.base_layer.bias
                if b.requires_grad != trainable:
                    raise RuntimeError("%s: PEFT's base bias requires_grad=%s, the case says bias %s"
                                       % (n, b.requires_grad, meta["bias." + n]))
                if trainable:
                    got["bias"] = b
                elif b.grad is not None:
                    raise RuntimeError("%s: the frozen base bias got a gradient" % n)
            if L.base_layer.weight.requires_grad or L.base_layer.weight.grad is not None:
                raise RuntimeError("%s: PEFT left the base weight trainable" % n)
            for k, t in got.items():
                if t.grad is None:
                    raise RuntimeError("%s.%s has no gradient from PEFT's backward" % (n, k))
                res["grad.%s.%s" % (n, k)] = t.grad
    return {k: v.detach().to("cpu", torch.float64) for k, v in res.items()}


# ----------------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------------


def draw_inputs(c, seed, idx):
    """The stored inputs of a case (all but the dropout masks) and its metadata."""
    mv = _mv()
    g = torch.Generator().manual_seed(seed * 1000 + idx)
    dkey, op, f = c["dtype"], c["op"], c["feats"]
    dt = mv.DTYPES[dkey]
    meta = {"op": op}
    if op == "lora_mlp":
        meta["activation"] = c["act"]
    meta.update({"dtype": dkey, "seed": str(seed), "case": str(idx), "projections": ",".join(PROJ[op])})
    T = {"X": torch.randn(c["M"], c["K"], generator=g).to(dt)}
    info = {}
    for name, (o, i) in proj_shapes(c).items():
        r, q = c["r"], per_proj(c["quant"], name)
        alpha = c["alpha_pattern"].get(name, c["alpha"])
        s = alpha / math.sqrt(r) if c["rslora"] else alpha / r  # PEFT's; build() checks it against layer.scaling
        W = (torch.randn(o, i, generator=g) / math.sqrt(i)).to(dt)
        A = (torch.randn(r, i, generator=g) / math.sqrt(i)).to(dt)
        B = (torch.randn(o, r, generator=g) * (c["ratio"] / (s * math.sqrt(r)))).to(dt)
        if q == "none":
            T[name + ".weight"] = W
        else:
            T.update(mv.nf4_encode(W, name, dkey, q == "nf4-dq"))
            info["nf4_rel_err." + name] = mv.rel_err(mv.nf4_decode(T, name), W)
        T[name + ".lora_A"], T[name + ".lora_B"] = A, B
        meta["scale." + name] = repr(s)
        meta["quant." + name] = q
        meta["dropout." + name] = repr(f["dropout"])
        meta["lora_bias." + name] = "1" if f["lora_bias"] else "0"
        meta["dora." + name] = "1" if f["dora"] else "0"
        meta["bias." + name] = bias_meta(c, name)
        if has_bias(c, name):
            T[name + ".bias"] = (torch.randn(o, generator=g) * 0.5).to(dt)
        if f["lora_bias"]:
            T[name + ".lora_B.bias"] = (torch.randn(o, generator=g) * (c["ratio"] / s)).to(dt)
        if f["dora"]:
            Wd = (W if q == "none" else mv.nf4_decode(T, name)).double()
            n = torch.linalg.norm(Wd + s * (B.double() @ A.double()), dim=1)
            u = torch.rand(o, generator=g, dtype=torch.float64)
            T[name + ".lora_magnitude"] = (n * (0.6 + 0.8 * u)).to(dt)
    if op != "matmul_lora":
        for k, d in out_dims(c).items():
            T["grad." + k] = torch.randn(c["M"], d, generator=g).to(dt)
    meta["dropout_mask"] = c["mask"]
    bias_cfg = c["feats"]["bias"] if c["feats"]["bias"] in ("all", "lora_only") else "none"
    config = {"r": c["r"], "lora_alpha": c["alpha"], "use_rslora": c["rslora"], "alpha_pattern": c["alpha_pattern"],
              "lora_dropout": f["dropout"], "lora_bias": f["lora_bias"], "use_dora": f["dora"], "bias": bias_cfg,
              "target_modules": PROJ[op], "init_lora_weights": True}
    meta["peft_config"] = json.dumps(config, sort_keys=True)
    return T, meta, info


def build_case(P, c, seed, idx, device):
    mv = _mv()
    T, meta, info = draw_inputs(c, seed, idx)
    dkey = c["dtype"]
    meta.update({"generator": "peft %s, torch %s" % (P.version, torch.__version__), "peft_version": P.version,
                 "torch_version": torch.__version__})
    ref = evaluate(P, T, meta, "cpu", torch.float64, exact=True, mask_seed=seed * 1000 + idx)
    got = evaluate(P, T, meta, device, mv.DTYPES[dkey], exact=False)
    for k, v in ref.items():
        e = mv.rel_err(got[k], v)
        T["expect." + k] = v.to(torch.float32).contiguous()
        meta["tol.expect." + k] = repr(max(2.0 * e, mv.TOL_FLOOR[dkey]))
        meta["torch_err.expect." + k] = repr(e)
    meta["torch_device"] = device if device == "cpu" else "cuda " + torch.cuda.get_device_name()
    for n in PROJ[c["op"]]:
        if n + ".dropout_mask" in T:
            info["kept." + n] = T[n + ".dropout_mask"].double().mean().item()
        if n + ".lora_magnitude" in T:
            Wd = dense_weight(T, meta, n).double()
            s = float(meta["scale." + n])
            nn_ = torch.linalg.norm(Wd + s * (T[n + ".lora_B"].double() @ T[n + ".lora_A"].double()), dim=1)
            cc = T[n + ".lora_magnitude"].double() / nn_
            info["dora_c_min." + n], info["dora_c_max." + n] = cc.min().item(), cc.max().item()
    x64 = T["X"].double()
    for n in PROJ[c["op"]]:
        if c["op"] == "lora_mlp" and n == "down":
            continue
        base = x64 @ dense_weight(T, meta, n).double().t()
        lora = (x64 @ T[n + ".lora_A"].double().t()) @ T[n + ".lora_B"].double().t() * float(meta["scale." + n])
        info["lora_to_base." + n] = lora.norm().item() / base.norm().item()
    return T, meta, info


def generate(args):
    mv = _mv()
    P = Peft(args.any_peft)
    device = mv.pick_device(args.device)
    name = "small" if args.small else "full"
    cases = suite(name)
    os.makedirs(args.out, exist_ok=True)
    entries, names = [], set()
    for idx, c in enumerate(cases):
        fname = case_name(c, args.seed)
        if fname in names:
            sys.exit("peft_vectors.py: two cases named %s" % fname)
        names.add(fname)
        T, meta, info = build_case(P, c, args.seed, idx, device)
        problems = validate(T, meta)
        if problems:
            sys.exit("peft_vectors.py: %s is malformed:\n  %s" % (fname, "\n  ".join(problems)))
        entries.append(mv.write_case(args.out, fname, T, meta, info, 78))
    index = {"format": "docs/CONFORMANCE.md", "suite": "peft-" + name, "seed": args.seed,
             "generator": "peft %s, torch %s" % (P.version, torch.__version__), "peft_version": P.version,
             "torch_version": torch.__version__, "torch_device": entries[0]["metadata"]["torch_device"]}
    mv.write_index(args.out, index, entries, 4e6 if args.small else 150e6)
    return 0


# ----------------------------------------------------------------------------------------------------------
# Structure checks (before writing, and in --check)
# ----------------------------------------------------------------------------------------------------------


def validate(T, meta):
    """The extension keys of one case against docs/CONFORMANCE.md; the plain keys are make_vectors.py's
    validate's, which knows nothing of the extension tensors, so those are set aside for it."""
    mv = _mv()
    bad = []
    op = meta.get("op")
    if op not in PROJ:
        return ["bad op %r" % op]
    for k in ("peft_version", "torch_version", "peft_config", "dropout_mask"):
        if k not in meta:
            bad.append("metadata %s missing" % k)
    if meta.get("dropout_mask") not in ("per_projection", "shared"):
        bad.append("dropout_mask = %r" % meta.get("dropout_mask"))
    M = T["X"].shape[0]
    plain = dict(T)
    ext_expect = {}
    for n in PROJ[op]:
        o = T[n + ".lora_B"].shape[0]
        i = T[n + ".lora_A"].shape[1]
        p = float(meta["dropout." + n])
        lb, dora, b = meta["lora_bias." + n], meta["dora." + n], meta["bias." + n]
        if lb not in ("0", "1") or dora not in ("0", "1") or b not in ("none", "frozen", "trainable"):
            bad.append("%s: lora_bias %r dora %r bias %r" % (n, lb, dora, b))
            continue
        if lb == "1" and dora == "1":
            bad.append("%s: lora_bias with dora" % n)
        if p > 0:
            mk = plain.pop(n + ".dropout_mask", None)
            if mk is None or mk.dtype != torch.uint8 or tuple(mk.shape) != (M, i) or bool((mk > 1).any()):
                bad.append("%s.dropout_mask: want U8 0/1 [%d, %d]" % (n, M, i))
        elif n + ".dropout_mask" in T:
            bad.append("%s.dropout_mask without dropout" % n)
        for key, on in (("lora_B.bias", lb == "1"), ("lora_magnitude", dora == "1"), ("bias", b != "none")):
            t = plain.pop(n + "." + key, None)
            if on != (t is not None) or (t is not None and (tuple(t.shape) != (o,) or t.dtype != T["X"].dtype)):
                bad.append("%s.%s: want %s [%d] of the case dtype" % (n, key, "present" if on else "absent", o))
        if op != "matmul_lora":
            for key, on in (("lora_B.bias", lb == "1"), ("lora_magnitude", dora == "1"), ("bias", b == "trainable")):
                ek = "expect.grad.%s.%s" % (n, key)
                t = plain.pop(ek, None)
                if on != (t is not None) or (t is not None and (tuple(t.shape) != (o,) or t.dtype != torch.float32)):
                    bad.append("%s: want %s [%d] F32" % (ek, "present" if on else "absent", o))
                if t is not None:
                    ext_expect[ek] = t
    if meta.get("dropout_mask") == "shared":
        for group in SHARED_GROUPS.get(op, []):
            masks = [T.get(n + ".dropout_mask") for n in group]
            if all(m is not None for m in masks) and not all(torch.equal(masks[0], m) for m in masks[1:]):
                bad.append("dropout_mask shared, but %s differ" % group)
    # make_vectors' validate checks every tol.* against its expect.*: hide the extension ones from it.
    pmeta = {k: v for k, v in meta.items() if not any(k.endswith(ek) and k.startswith(("tol.", "torch_err."))
                                                      for ek in ext_expect)}
    bad += mv.validate(plain, pmeta)
    for ek in ext_expect:
        tk, ek2 = "tol." + ek, "torch_err." + ek
        if tk not in meta or ek2 not in meta:
            bad.append("%s or %s missing" % (tk, ek2))
            continue
        floor = mv.TOL_FLOOR[meta["dtype"]]
        tol, err = float(meta[tk]), float(meta[ek2])
        if not (tol >= floor and abs(tol - max(2 * err, floor)) <= 1e-12 * max(tol, 1.0)):
            bad.append("%s value" % tk)
    return bad


def check(args):
    """--check: make_vectors.py's checker with this file's validation and PEFT's float64 recomputation."""
    P = Peft(args.any_peft)
    mv = _mv()

    def check_file(path):
        return mv.check_file(path, validate, lambda T, meta: evaluate(P, T, meta, "cpu", torch.float64, exact=True),
                             what="PEFT's float64 recomputation", label="recomputed PEFT")

    return mv.check(args.check, check_file)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--small", action="store_true", help="the small suite (testdata/peft-small: 16 files, < 1 MB)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where PEFT runs in the case dtype to measure torch_err (and so tol)")
    ap.add_argument("--check", nargs="+", metavar="FILE", help="verify files (or directories of files)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--any-peft", action="store_true", help="accept a peft other than %d.%d.x" % PEFT_SERIES)
    a = ap.parse_args()
    if a.list:
        for c in suite("small" if a.small else "full"):
            print(case_name(c, a.seed))
        return 0
    if a.check:
        return check(a)
    if not a.out:
        ap.error("--out DIR is required (or --check / --list)")
    return generate(a)


if __name__ == "__main__":
    sys.exit(main())
