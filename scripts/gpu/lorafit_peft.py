#!/usr/bin/env python3
"""lorafit against PyTorch + PEFT, on a GPU machine (docs/FINETUNE.md).

check: loads a checkpoint lorafit trained on (-make-model writes one) and the adapter it saved into an
    equivalent PyTorch module stack (nn.Linear q, k, v, o, gate, up, down per decoder layer, named as
    transformers names them: model.layers.{i}.self_attn.q_proj, ...) with PeftModel.from_pretrained,
    runs the inputs of lorafit's -dump file through it and compares the outputs with vklora's, within
    bf16 tolerance. Prints one line per output with its relative Frobenius error.
bench: the same training loop in PyTorch (PEFT LoRA on the seven projections + torch.optim.AdamW +
    clip_grad_norm_ + a cosine LambdaLR, the loss lorafit uses: the mean over q, k, v, o and MLP outputs
    of each one's MSE against a teacher W + V.U) at a preset's layer sizes, and prints steps per second.
all (the default): with --lorafit BIN, runs lorafit twice (-make-model at the tiny preset, then at
    --preset with --layers, --batch, --steps, --r), checks both adapters, times the PyTorch loop at the
    same sizes and prints the two rates side by side. Without --lorafit it runs bench only.

The loop, as lorafit runs it: per step one pool batch (X [M, hidden] for QKV and the MLP, Z [M, heads*head_dim]
for O; --pool batches drawn once and cycled), the teacher's outputs without grad, the student's, the loss,
backward, clipping to norm 1, the AdamW step, and loss.item() (lorafit reads its loss back every step too).
X and Z require grad, because vklora's layers always compute dX (in a real model the layers are chained and
need it); --no-input-grad lets autograd skip it. PEFT keeps bf16 models' adapters in fp32 by default
(autocast_adapter_dtype=True); --adapter-dtype bf16 keeps them in bf16, as vklora does.

Needs torch (CUDA), peft and safetensors. Run after `source scripts/gpu/gpu-env.sh` (VK_DRIVER_FILES for
lorafit); scripts/gpu/gpu-lorafit.sh does both.

  python3 scripts/gpu/lorafit_peft.py --lorafit .devcarry/bin/lorafit [--preset llama3-8b --layers 1 --steps 50]
  python3 scripts/gpu/lorafit_peft.py check --model DIR --adapter DIR --dump FILE.safetensors
  python3 scripts/gpu/lorafit_peft.py bench --preset llama3-8b --batch 8192 --steps 50
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Layer shapes of lorafit's presets (cmd/lorafit/presets.go): hidden, intermediate, heads, kv heads,
# head_dim, activation, default tokens per step.
PRESETS = {
    "tiny": dict(H=32, I=64, heads=4, kv=2, hd=8, act="silu", M=64),
    "llama3-8b": dict(H=4096, I=14336, heads=32, kv=8, hd=128, act="silu", M=8192),
    "gemma-2b": dict(H=2048, I=16384, heads=8, kv=1, hd=256, act="gelu_pytorch_tanh", M=8192),
    "qwen2.5-0.5b": dict(H=896, I=4864, heads=14, kv=2, hd=64, act="silu", M=4096),
}
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Relative Frobenius error allowed between PEFT's and vklora's bf16 outputs: package ref's bf16 Product
# tolerance for one projection, its Layer tolerance for the MLP (two roundings of [M, I] between).
TOL = {"proj": 1e-2, "mlp": 4e-2}


def activation(name):
    if name in ("silu", "swish"):
        return F.silu
    if name == "gelu":
        return lambda x: F.gelu(x)
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    raise SystemExit(f"unsupported hidden_act {name!r}")


class Attn(nn.Module):
    def __init__(self, H, Q, KV, bias, dt, dev):
        super().__init__()
        self.q_proj = nn.Linear(H, Q, bias=bias["q_proj"], dtype=dt, device=dev)
        self.k_proj = nn.Linear(H, KV, bias=bias["k_proj"], dtype=dt, device=dev)
        self.v_proj = nn.Linear(H, KV, bias=bias["v_proj"], dtype=dt, device=dev)
        self.o_proj = nn.Linear(Q, H, bias=bias["o_proj"], dtype=dt, device=dev)


class MLP(nn.Module):
    def __init__(self, H, I, act, bias, dt, dev):
        super().__init__()
        self.gate_proj = nn.Linear(H, I, bias=bias["gate_proj"], dtype=dt, device=dev)
        self.up_proj = nn.Linear(H, I, bias=bias["up_proj"], dtype=dt, device=dev)
        self.down_proj = nn.Linear(I, H, bias=bias["down_proj"], dtype=dt, device=dev)
        self.act = activation(act)

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, s, bias, dt, dev):
        super().__init__()
        Q, KV = s["heads"] * s["hd"], s["kv"] * s["hd"]
        self.self_attn = Attn(s["H"], Q, KV, bias, dt, dev)
        self.mlp = MLP(s["H"], s["I"], s["act"], bias, dt, dev)


class Inner(nn.Module):
    def __init__(self, s, n, bias, dt, dev):
        super().__init__()
        self.layers = nn.ModuleList([Layer(s, bias, dt, dev) for _ in range(n)])


class Stack(nn.Module):
    """The decoder layers' projections under transformers' names (model.layers.{i}...), and nothing else:
    the attention between QKV and O and the norms are not what lorafit trains."""

    def __init__(self, s, n, bias=None, dt=torch.bfloat16, dev="cuda"):
        super().__init__()
        self.model = Inner(s, n, bias or {p: False for p in PROJ}, dt, dev)

    # PeftModelForCausalLM (task_type CAUSAL_LM, which lorafit writes) looks this up at construction.
    def prepare_inputs_for_generation(self, *args, **kwargs):
        raise NotImplementedError


def outputs(layer, x, z):
    a = layer.self_attn
    return [a.q_proj(x), a.k_proj(x), a.v_proj(x), a.o_proj(z), layer.mlp(x)]


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    heads = c["num_attention_heads"]
    act = c.get("hidden_act", "silu")
    if c["model_type"].startswith("gemma"):
        act = c.get("hidden_activation") or "gelu_pytorch_tanh"
    s = dict(H=c["hidden_size"], I=c["intermediate_size"], heads=heads, kv=c.get("num_key_value_heads", heads),
             hd=c.get("head_dim") or c["hidden_size"] // heads, act=act)
    return c, s


def load_weights(model_dir):
    from safetensors.torch import load_file
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return load_file(single)
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    sd = {}
    for sh in shards:
        sd.update(load_file(os.path.join(model_dir, sh)))
    return sd


def rel(got, want):
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-300)).item()


def check(model_dir, adapter_dir, dump_path, dev="cuda"):
    """(a): PEFT's outputs with lorafit's adapter against vklora's; returns True when all are within TOL."""
    from peft import PeftModel
    from safetensors import safe_open
    from safetensors.torch import load_file

    cfg, s = read_config(model_dir)
    sd = load_weights(model_dir)
    n = cfg["num_hidden_layers"]
    bias = {p: any(k.endswith(f".{p}.bias") for k in sd) for p in PROJ}
    dt = TORCH_DTYPE[cfg.get("torch_dtype") or cfg.get("dtype") or "float32"]
    stack = Stack(s, n, bias, dt, dev)
    missing, _ = stack.load_state_dict({k: v for k, v in sd.items() if k.startswith("model.layers.")}, strict=False)
    if missing:
        raise SystemExit(f"checkpoint lacks {missing[:3]}")
    pm = PeftModel.from_pretrained(stack, adapter_dir).eval()
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    # PEFT must have put every saved tensor in place (names: base_model.model.P.lora_A.weight).
    params = dict(pm.named_parameters())
    for k, v in saved.items():
        name = k.replace(".weight", ".default.weight")
        if name not in params:
            raise SystemExit(f"PEFT did not load {k}")
        if not torch.equal(params[name].detach().float().cpu(), v.float()):
            raise SystemExit(f"PEFT's {name} differs from the file")
    d = load_file(dump_path)
    with safe_open(dump_path, "pt") as f:
        layers = [int(i) for i in f.metadata()["lorafit.layers"].split(",")]
    x, z = d["x"].to(dev), d["z"].to(dev)
    inner = pm.base_model.model.model
    ok = True
    with torch.no_grad():
        for i in layers:
            got = outputs(inner.layers[i], x, z)
            names = [f"model.layers.{i}.self_attn.{p}" for p in PROJ[:4]] + [f"model.layers.{i}.mlp"]
            for name, y in zip(names, got):
                want, teacher = d["student." + name].to(dev), d["teacher." + name].to(dev)
                e = rel(y, want)
                tol = TOL["mlp" if name.endswith(".mlp") else "proj"]
                ok &= e <= tol
                print(f"check {name:34s} PEFT vs vklora rel err {e:.2e} (tol {tol:g}) "
                      f"{'ok' if e <= tol else 'FAIL'}; vklora vs teacher {rel(want, teacher):.2e}")
    print(f"check {model_dir} + {adapter_dir}: {'PASS' if ok else 'FAIL'} ({dt}, {x.shape[0]} rows)")
    return ok


def cosine(warmup, total, min_ratio):
    """optim.LinearWarmupCosine, transformers' get_cosine_with_min_lr_schedule_with_warmup."""
    def f(k):
        if k < warmup:
            return k / max(1, warmup)
        p = (k - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * p)) * (1 - min_ratio) + min_ratio)
    return f


def bench(a, dev="cuda"):
    """(b): the lorafit loop in PyTorch + PEFT at a preset's sizes; returns steps per second."""
    from peft import LoraConfig, get_peft_model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(a.seed)
    s = PRESETS[a.preset]
    M = a.batch or s["M"]
    dt = torch.bfloat16
    Q, KV = s["heads"] * s["hd"], s["kv"] * s["hd"]
    stack = Stack(s, a.layers, dt=dt, dev=dev)
    with torch.no_grad():
        for p in stack.parameters():
            p.normal_(0, 1 / p.shape[-1] ** 0.5)
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=list(PROJ))
    pm = get_peft_model(stack, cfg, autocast_adapter_dtype=(a.adapter_dtype == "fp32"))
    inner = pm.base_model.model.model
    tr = a.teacher_rank or max(1, a.r // 2)

    def delta(lin):
        base = lin.base_layer
        out, inp = base.weight.shape
        u = torch.randn(tr, inp, device=dev, dtype=dt) / inp ** 0.5
        v = torch.randn(out, tr, device=dev, dtype=dt) * (a.teacher_scale / tr ** 0.5)
        return lambda x: F.linear(x, base.weight, base.bias) + (x @ u.t()) @ v.t()

    teachers = []
    for layer in inner.layers:
        at, m = layer.self_attn, layer.mlp
        t = {p: delta(getattr(at, p)) for p in PROJ[:4]}
        t.update({p: delta(getattr(m, p)) for p in PROJ[4:]})
        teachers.append(t)

    def teacher_out(t, x, z, act):
        return [t["q_proj"](x), t["k_proj"](x), t["v_proj"](x), t["o_proj"](z),
                t["down_proj"](act(t["gate_proj"](x)) * t["up_proj"](x))]

    pool = []
    for _ in range(max(1, a.pool)):
        x = torch.randn(M, s["H"], device=dev, dtype=dt).requires_grad_(not a.no_input_grad)
        z = torch.randn(M, Q, device=dev, dtype=dt).requires_grad_(not a.no_input_grad)
        pool.append((x, z))
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(0, a.steps, 0.1))
    act = activation(s["act"])
    warm = min(3, a.steps // 3)
    losses = []
    torch.cuda.reset_peak_memory_stats()
    for step in range(a.steps):
        if step == warm:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, z = pool[step % len(pool)]
        terms = []
        for layer, t in zip(inner.layers, teachers):
            with torch.no_grad():
                want = teacher_out(t, x, z, act)
            for y, w in zip(outputs(layer, x, z), want):
                terms.append(F.mse_loss(y, w))
        loss = torch.stack([t.float() for t in terms]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        x.grad = z.grad = None
        losses.append(loss.item())
    el = time.perf_counter() - t0
    rate = (a.steps - warm) / el
    nparams = sum(p.numel() for p in params)
    print(f"bench torch {torch.__version__} PEFT: {a.preset} x{a.layers} layer(s), M={M}, r={a.r}, adapters "
          f"{a.adapter_dtype}, input grads {'off' if a.no_input_grad else 'on'}: {rate:.3g} step/s "
          f"({a.steps - warm} steps after {warm} warm-up), loss {losses[0]:.3e} -> {losses[-1]:.3e}, "
          f"{nparams} trainable params, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return rate


def run_lorafit(a, workdir, preset, layers, batch, steps, r):
    """Runs lorafit -make-model; returns (model dir, adapter dir, dump file, lorafit.json)."""
    model, out, dump = (os.path.join(workdir, f"{preset}-{x}") for x in ("model", "adapter", "dump.safetensors"))
    cmd = [a.lorafit, "-make-model", model, "-preset", preset, "-layers", str(layers), "-steps", str(steps),
           "-r", str(r), "-alpha", str(2 * r), "-out", out, "-dump", dump, "-seed", str(a.seed), "-pool", str(a.pool)]
    if batch:
        cmd += ["-batch", str(batch)]
    if a.teacher_rank:
        cmd += ["-teacher-rank", str(a.teacher_rank)]
    if a.lr_lorafit:
        cmd += ["-lr", str(a.lr_lorafit)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    with open(os.path.join(out, "lorafit.json")) as f:
        rep = json.load(f)
    return model, out, dump, rep


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="all", choices=["all", "check", "bench"])
    ap.add_argument("--lorafit", help="the lorafit binary (mode all)")
    ap.add_argument("--model"), ap.add_argument("--adapter"), ap.add_argument("--dump")
    ap.add_argument("--preset", default="llama3-8b", choices=list(PRESETS))
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=0, help="tokens per step (0: the preset's)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=0, help="lora_alpha (0: 2r, as lorafit's default)")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr-lorafit", type=float, default=0, help="lorafit's -lr in mode all (0: its default)")
    ap.add_argument("--teacher-rank", type=int, default=0)
    ap.add_argument("--teacher-scale", type=float, default=0.2)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--adapter-dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--no-input-grad", action="store_true")
    ap.add_argument("--workdir", help="where mode all writes checkpoints and adapters (default: a temp dir)")
    a = ap.parse_args()
    a.alpha = a.alpha or 2 * a.r
    if a.mode == "check":
        if not (a.model and a.adapter and a.dump):
            ap.error("check needs --model, --adapter and --dump")
        sys.exit(0 if check(a.model, a.adapter, a.dump) else 1)
    if a.mode == "bench" or not a.lorafit:
        bench(a)
        return
    workdir = a.workdir or tempfile.mkdtemp(prefix="lorafit-peft-")
    ok = True
    m, ad, dump, tiny = run_lorafit(a, workdir, "tiny", 1, 0, 150, 8)
    print(f"lorafit tiny: loss ratio {tiny['loss_ratio']:.3g} in {tiny['seconds']:.1f}s")
    ok &= check(m, ad, dump)
    m, ad, dump, big = run_lorafit(a, workdir, a.preset, a.layers, a.batch, a.steps, a.r)
    ok &= check(m, ad, dump)
    rate = bench(a)
    print(f"summary: {a.preset} x{a.layers} layer(s), M={big['tokens']}, r={a.r}, {a.steps} steps: "
          f"lorafit {big['steps_per_second']:.3g} step/s on {big['device']} (loss ratio {big['loss_ratio']:.3g}), "
          f"PyTorch+PEFT {rate:.3g} step/s, ratio {big['steps_per_second'] / rate:.2f}; checks {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
