#!/usr/bin/env python3
"""Check a merged checkpoint written by hf.Checkpoint.WriteMerged against
transformers (and, optionally, against PEFT's own merge_and_unload).

    python3 scripts/gpu/check_merged.py DIR
    python3 scripts/gpu/check_merged.py DIR --peft BASE_DIR ADAPTER_DIR [--tol 0.02]

1. Reads every tensor of DIR's model.safetensors (or of the shards its
   model.safetensors.index.json lists).
2. Loads DIR with AutoModelForCausalLM.from_pretrained(DIR, dtype=the
   config's torch_dtype) and requires no unexpected or mismatched keys and
   no missing ones but a tied lm_head, then that every named parameter and
   buffer the files hold equals the file's tensor exactly (same dtype, same
   bits), and that a forward pass on a few tokens gives finite logits.
3. With --peft: loads BASE_DIR with the adapter, runs PEFT's
   merge_and_unload() and compares each weight of DIR with it by relative
   Frobenius error, ‖ours − peft‖/‖peft‖ ≤ --tol (PEFT rounds B·A, s·B·A and
   the sum to the weight dtype, we round once, so bf16 differs by a few
   ulps). An NF4 BASE_DIR (it needs bitsandbytes and a GPU) is dequantized
   with transformers' model.dequantize() before PEFT merges into it: PEFT's
   own merge into a 4-bit layer quantizes the result to NF4 again, which is
   not the dense checkpoint WriteMerged writes.

Exits 1 on any failure; prints one line per problem and a summary.
"""
import argparse
import json
import os
import sys

import torch


def read_tensors(d):
    from safetensors.torch import load_file

    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(os.path.join(d, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for name in files:
        out.update(load_file(os.path.join(d, name)))
    return out


def load_model(d, dtype, **kw):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(d, dtype=dtype, output_loading_info=True, **kw)
    except TypeError:  # transformers before 4.56 names it torch_dtype
        return AutoModelForCausalLM.from_pretrained(d, torch_dtype=dtype, output_loading_info=True, **kw)


def rel_err(a, b):
    a, b = a.double(), b.double()
    n = b.norm().item()
    return (a - b).norm().item() / (n if n else 1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--peft", nargs=2, metavar=("BASE_DIR", "ADAPTER_DIR"))
    ap.add_argument("--tol", type=float, default=0.02)
    args = ap.parse_args()

    with open(os.path.join(args.dir, "config.json")) as f:
        cfg = json.load(f)
    bad = []
    if "quantization_config" in cfg:
        bad.append("config.json still has quantization_config")
    dtype = getattr(torch, cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    files = read_tensors(args.dir)
    print(f"{len(files)} tensors in {args.dir}, dtype {dtype}")
    for n, t in files.items():
        if t.dtype != dtype and t.is_floating_point():
            bad.append(f"{n}: stored as {t.dtype}, config says {dtype}")

    try:
        model, info = load_model(args.dir, dtype)
    except ImportError:
        print("transformers is not installed: checked the files only")
        model = None
    if model is not None:
        tied = cfg.get("tie_word_embeddings", False)
        for k in ("unexpected_keys", "mismatched_keys", "missing_keys"):
            keys = [x for x in info.get(k, []) if not (k == "missing_keys" and tied and x == "lm_head.weight")]
            if keys:
                bad.append(f"{k}: {keys[:8]}{' …' if len(keys) > 8 else ''}")
        state = model.state_dict()
        for n, t in files.items():
            if n not in state:
                bad.append(f"{n}: not a parameter or buffer of {type(model).__name__}")
            elif state[n].dtype != t.dtype or state[n].shape != t.shape or not torch.equal(state[n].cpu(), t):
                bad.append(f"{n}: the loaded model's tensor differs from the file's")
        ids = torch.tensor([[1, 2, 3, 4, 5]]) % model.config.vocab_size
        with torch.no_grad():
            logits = model(ids.to(model.device)).logits
        if not torch.isfinite(logits).all():
            bad.append("forward pass: non-finite logits")
        print(f"transformers loaded {type(model).__name__}; forward logits {tuple(logits.shape)}")
        del model

    if args.peft:
        from peft import PeftModel

        base, _ = load_model(args.peft[0], dtype)
        if getattr(base.config, "quantization_config", None) is not None:
            base = base.dequantize()
        merged = PeftModel.from_pretrained(base, args.peft[1]).merge_and_unload()
        ref = {n: t.detach().cpu() for n, t in merged.state_dict().items()}
        worst = 0.0
        for n, t in files.items():
            if n not in ref:
                bad.append(f"{n}: not in PEFT's merged model")
                continue
            e = rel_err(t, ref[n].to(t.dtype))
            worst = max(worst, e)
            if e > args.tol:
                bad.append(f"{n}: relative error {e:.3g} against PEFT's merge_and_unload > {args.tol}")
        print(f"PEFT merge_and_unload: worst relative error {worst:.3g} over {len(files)} tensors")

    for b in bad:
        print("FAIL", b)
    print("OK" if not bad else f"{len(bad)} problems")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
