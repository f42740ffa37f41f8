#!/usr/bin/python3
"""Masks no `circuitlens protect` option writes, made from ones it does, for scripts/protect_sweep.py's controls.

    node dist/cli.js protect examples/induction-gpt2.circuit.json --out owned.safetensors
    node dist/cli.js protect examples/induction-gpt2.circuit.json --shared all [--scale 0] --out shared.safetensors
    node dist/cli.js protect --snippet > apply_mask.py
    /usr/bin/python3 scripts/protect_mask_variants.py --snippet apply_mask.py IN.safetensors OUT.safetensors \\
        (--set INITIALIZER=VALUE ... | --invert SCALE | --uniform SCALE)

--set sets every entry of an initializer (e.g. a layer's attention output bias, which no node owns and no --shared
part covers) to VALUE; --invert SCALE gives every entry IN leaves at 1 the scale SCALE and every entry IN protects
1 (the rest of the model protected, the circuit free); --uniform SCALE gives every entry SCALE (with Adam, the same
as a learning rate SCALE times smaller: a control). The metadata (PyTorch names) is IN's.
"""

import argparse
import importlib.util
import json
import struct

import torch


def write_safetensors(path, tensors, meta):
    header, offset, blobs = {"__metadata__": meta}, 0, []
    for name, t in tensors.items():
        b = t.contiguous().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--snippet", required=True, help="the snippet of `circuitlens protect --snippet` (its read_safetensors)")
    ap.add_argument("mask_in")
    ap.add_argument("mask_out")
    ap.add_argument("--set", action="append", default=[], metavar="INITIALIZER=VALUE")
    ap.add_argument("--invert", type=float, metavar="SCALE")
    ap.add_argument("--uniform", type=float, metavar="SCALE")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("apply_mask", args.snippet)
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    tensors, meta = snippet.read_safetensors(args.mask_in)
    if args.invert is not None:
        tensors = {k: torch.where(t < 1, torch.ones_like(t), torch.full_like(t, args.invert)) for k, t in tensors.items()}
    if args.uniform is not None:
        tensors = {k: torch.full_like(t, args.uniform) for k, t in tensors.items()}
    for s in args.set:
        name, value = s.split("=", 1)
        assert name in tensors, f"--set {s}: no initializer {name} in {args.mask_in}"
        tensors[name].fill_(float(value))
    write_safetensors(args.mask_out, tensors, meta)
    print(f"{args.mask_out}: {sum(int((t < 1).sum()) for t in tensors.values())} protected entries")


if __name__ == "__main__":
    main()
