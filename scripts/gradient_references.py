#!/usr/bin/python3
"""PyTorch autograd references for CircuitLens' ONNX backward graphs (core/onnx/autodiff.ts).

Run with Debian's interpreter (torch 1.13, onnx 1.12):

    /usr/bin/python3 scripts/gradient_references.py

For each demo model it rebuilds the PyTorch module of scripts/train_demo_models.py, loads the weights from
the committed .onnx file's initializers (so the references describe exactly that file; nothing is trained or
re-exported), checks that the forward pass reproduces examples/references/<model>.json's logits (max abs
diff <= 1e-5), and writes examples/references/<model>.grads.json:

  L = sum over the 4 reference prompts of (logit[answer] - logit[foil]) at the last position,
      answer = PyTorch's own argmax there, foil = the prompt's first token id (its second token
      where the first is the answer, so that no row's gradient is identically 0);
  grads[hook] = dL/d(hook output) for every blocks.L.attn.hook_z [B,T,H,Dh], blocks.L.hook_mlp_out [B,T,D]
      and blocks.L.hook_resid_pre [B,T,D].

Tensors are little-endian float32, base64, row-major, batch first (the format of the forward references).
"""

import base64
import importlib.util
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
REFERENCES = os.path.join(EXAMPLES, "references")
FORWARD_TOL = 1e-5


def load_training_module():
    spec = importlib.util.spec_from_file_location("train_demo_models", os.path.join(ROOT, "scripts", "train_demo_models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def decode(t):
    return torch.from_numpy(np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").copy()).reshape(t["shape"])


def encode(t):
    t = t.detach().contiguous().to(torch.float32)
    return {"shape": list(t.shape), "b64": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode("ascii")}


def weights_from_onnx(path, model):
    """State dict of `model` filled from the ONNX initializers.

    torch.onnx.export keeps parameter names for everything except the Linear weights, which it folds into
    transposed MatMul operands with generated names (onnx::MatMul_NNN). Those are mapped by graph structure:
    the MatMul node consuming the initializer is named after the module (/blocks.0/attn/qkv/MatMul).
    """
    m = onnx.load(path)
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    expected = model.state_dict()
    state = {}
    tied = []
    for name, value in inits.items():
        if name in expected:
            state[name] = value
            continue
        users = [n for n in m.graph.node if name in n.input]
        if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[1] != name:
            raise SystemExit(f"{path}: cannot map initializer {name} (used by {[u.name for u in users]})")
        module = users[0].name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        if users[0].name == "/MatMul":  # GPT-2's tied unembedding F.linear(x, embed.weight)
            tied.append(("embed.weight", value.t()))
            continue
        key = f"{module}.weight"
        if key not in expected:
            raise SystemExit(f"{path}: MatMul {users[0].name} maps to {key}, which the PyTorch model does not have")
        state[key] = value.t().contiguous()
    for key, value in tied:
        if key not in state:
            raise SystemExit(f"{path}: tied weight {key} has no initializer of its own")
        if not torch.equal(state[key], value):
            raise SystemExit(f"{path}: the unembedding is not the transposed token embedding")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise SystemExit(f"{path}: no initializer for {missing}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise SystemExit(f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}")
    return state


def gradients(model, ids, hooks):
    """Clean logits and dL/d(hook) for L = sum_b logit[answer_b] - logit[foil_b] at the last position."""
    modules = dict(model.named_modules())
    store = {}
    handles = []

    def capture(name):
        def fn(_module, _inputs, output):
            output.retain_grad()
            store[name] = output

        return fn

    try:
        for h in hooks:
            handles.append(modules[h].register_forward_hook(capture(h)))
        logits = model(ids)
    finally:
        for handle in handles:
            handle.remove()
    last = logits[:, -1, :]
    answers = last.argmax(-1)
    # The prompt's first token, or its second where the first is the answer (a prompt of two whole periods
    # continues with its first token): a foil equal to the answer would make the row's gradient identically 0.
    foils = torch.where(answers == ids[:, 0], ids[:, 1], ids[:, 0])
    rows = torch.arange(ids.shape[0])
    loss = (last[rows, answers] - last[rows, foils]).sum()
    loss.backward()
    return logits.detach(), answers, foils, loss.item(), {h: store[h].grad for h in hooks}


def main():
    tdm = load_training_module()
    for name, cfg in tdm.CONFIGS.items():
        ref_path = os.path.join(REFERENCES, f"{name}.json")
        onnx_path = os.path.join(EXAMPLES, f"{name}.onnx")
        with open(ref_path) as f:
            ref = json.load(f)
        model = tdm.build(cfg)
        model.load_state_dict(weights_from_onnx(onnx_path, model))
        model.eval()
        ids = torch.tensor([p["ids"] for p in ref["prompts"]], dtype=torch.int64)
        hooks = []
        for L in range(cfg["n_layers"]):
            hooks += [f"blocks.{L}.hook_resid_pre", f"blocks.{L}.attn.hook_z", f"blocks.{L}.hook_mlp_out"]
        logits, answers, foils, value, grads = gradients(model, ids, hooks)
        diff = (logits - decode(ref["clean"]["logits"])).abs().max().item()
        print(f"{name}: forward from the ONNX weights vs {os.path.relpath(ref_path, ROOT)} logits: max abs diff {diff:.2e}")
        if not diff <= FORWARD_TOL:
            raise SystemExit(f"{name}: the rebuilt PyTorch model does not reproduce the reference logits (max abs diff {diff} > {FORWARD_TOL})")
        out = {
            "model": f"{name}.onnx",
            "notes": "dL/d(hook) from PyTorch autograd, L = sum over prompts of logit[answer] - logit[foil] at the last "
            "position; answer = PyTorch's argmax there, foil = the prompt's first token id (the second where the first is the answer). Weights loaded from the "
            "ONNX initializers. float32 little-endian base64 tensors, row-major, batch first; hook_z is [B,T,H,Dh].",
            "metric": "logit_diff",
            "value": value,
            "forwardMaxAbsDiff": diff,
            "prompts": [{"ids": p["ids"], "answer": int(a), "foil": int(fo)} for p, a, fo in zip(ref["prompts"], answers, foils)],
            "grads": {h: encode(g) for h, g in grads.items()},
        }
        path = os.path.join(REFERENCES, f"{name}.grads.json")
        with open(path, "w") as f:
            json.dump(out, f)
            f.write("\n")
        norms = ", ".join(f"{h} {g.abs().max().item():.3g}" for h, g in grads.items())
        print(f"  L = {value:.4f}; max |grad|: {norms}")
        print(f"  wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
