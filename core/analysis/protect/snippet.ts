// The Python that applies a protect mask in PyTorch (`circuitlens protect --snippet`). It needs torch only: the
// safetensors file is read by hand. Two ways to apply it:
// - protect_optimizer (any optimizer): each entry's update is multiplied by its mask after the optimizer's step,
//   p ← p_old + mask·(p_new − p_old): an exact per-entry learning-rate scale, Adam's and weight decay's included.
// - scale_gradients (gradient hooks): each entry's gradient is multiplied by its mask. That scales the update of
//   SGD (with or without momentum), whose step is linear in the gradient; Adam's step is not (it divides by the
//   gradient's running magnitude), so under Adam the hooks barely protect (scripts/protect_check.py measures it).

export const PROTECT_SNIPPET = `# Apply a CircuitLens protect mask (circuitlens protect C.circuit.json --out MASK.safetensors) in PyTorch.
#
#   masks = load_protect_mask("MASK.safetensors", model)   # {parameter: mask shaped like it}
#   protect_optimizer(optimizer, masks)                    # every optimizer.step() now scales each entry's update
#
# Entries of the circuit's weights get the mask's scale (e.g. 0.01: a 100x smaller learning rate), the rest 1.
# For plain SGD, gradient hooks do the same: scale_gradients(masks). Not for Adam/AdamW: their step does not grow
# with the gradient, so a scaled gradient gives nearly the same step.
import json
import struct

import torch


def read_safetensors(path):
    """float32 safetensors -> ({name: tensor}, metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {t['dtype']}, expected F32")
        begin, end = t["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        values = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.empty(0)
        tensors[name] = values.reshape(t["shape"]).clone()
    return tensors, meta


def load_protect_mask(path, model):
    """The mask of each parameter of model, by the PyTorch names in the file's metadata.

    ONNX initializers whose PyTorch parameter is known map to it (transposed where torch.onnx exported a Linear's
    weight as [in, out]); initializers named like the model's parameters map by name. Raises when protected
    entries (mask != 1) cannot be placed on a parameter of the same shape.
    """
    tensors, meta = read_safetensors(path)
    kept = json.loads(meta.get("pytorch_names", "{}"))
    transposed = json.loads(meta.get("pytorch_transposed", "{}"))
    params = dict(model.named_parameters())
    masks, lost = {}, []
    for onnx_name, mask in tensors.items():
        if onnx_name in transposed:
            torch_name, mask = transposed[onnx_name], mask.t()
        else:
            torch_name = kept.get(onnx_name, onnx_name)
        p = params.get(torch_name)
        if p is None or tuple(p.shape) != tuple(mask.shape):
            if bool((mask != 1).any()):
                lost.append(f"{onnx_name} -> {torch_name} {tuple(mask.shape)}")
            continue
        mask = mask.to(device=p.device, dtype=p.dtype)
        masks[p] = torch.minimum(masks[p], mask) if p in masks else mask
    if lost:
        raise KeyError("protected entries with no parameter of that name and shape: " + "; ".join(lost))
    return masks


def protect_optimizer(optimizer, masks):
    """Makes optimizer.step() scale each entry's update by its mask (any optimizer). Call before making LR schedulers."""
    step = optimizer.step

    def protected_step(*args, **kwargs):
        before = {p: p.detach().clone() for p in masks}
        result = step(*args, **kwargs)
        with torch.no_grad():
            for p, m in masks.items():
                p.copy_(before[p] + m * (p - before[p]))
        return result

    optimizer.step = protected_step
    return optimizer


def scale_gradients(masks):
    """Gradient hooks multiplying each entry's gradient by its mask (a learning-rate scale for SGD only)."""
    return [p.register_hook(lambda g, m=m: g * m) for p, m in masks.items()]
`;

/**
 * What `protect --anchor --snippet` adds: the faithfulness anchor, a loss term KL(whole model || circuit alone) on
 * prompts of the circuit's behaviour, the circuit alone being the model with the nodes outside the circuit (the
 * mask's `anchor` metadata, core/analysis/protect/anchor.ts) mean-ablated. scripts/protect_sweep.py measures it.
 */
export const ANCHOR_SNIPPET = `

# With a mask written by circuitlens protect --anchor: a loss term that keeps the whole model explainable by the
# circuit (what faithfulness measures) while it fine-tunes.
#
#   anchor = load_anchor("MASK.safetensors", model)
#   loss = task_loss + faithfulness_anchor_loss(model, anchor, lambda m: m(anchor_ids), positions)
#
# anchor_ids: prompts of the circuit's behaviour (fresh ones each step, or the suite's task prompts); run(m) must
# return logits [batch, seq, vocab] (Hugging Face: lambda m: m(anchor_ids).logits); positions: bool [batch, seq],
# where to compare next-token distributions (None: everywhere). The term is KL(whole model || circuit alone), the
# circuit alone being the model with every node outside the circuit mean-ablated as circuitlens verify does it
# (a head's slice of its output projection's input, an MLP's output, replaced by its mean over the batch's rows
# and positions: keep padding out of anchor_ids). Gradients go through both runs. It keeps the two close; it does
# not keep the behaviour itself (the mask does more of that).
def load_anchor(path, model):
    """The modules of the nodes outside the circuit: {"heads": {module: [(start, end)]}, "mlps": [module]}."""
    _, meta = read_safetensors(path)
    if "anchor" not in meta:
        raise ValueError(f"{path}: no anchor in its metadata (write it with circuitlens protect --anchor)")
    spec = json.loads(meta["anchor"])
    modules = dict(model.named_modules())
    missing = sorted({x["module"] for x in spec["heads"] + spec["mlps"] if x["module"] not in modules})
    if missing:
        raise KeyError("modules of the anchor not in the model: " + ", ".join(missing))
    heads = {}
    for h in spec["heads"]:
        heads.setdefault(modules[h["module"]], []).append((h["start"], h["end"]))
    return {"heads": heads, "mlps": [modules[m["module"]] for m in spec["mlps"]]}


def circuit_alone(model, anchor, run):
    """(run(model), run(model) with the nodes outside the circuit mean-ablated); means taken on the first run."""
    seen, handles = {}, []
    try:
        for m in anchor["heads"]:
            handles.append(m.register_forward_pre_hook(lambda mod, args: seen.__setitem__(mod, args[0])))
        for m in anchor["mlps"]:
            handles.append(m.register_forward_hook(lambda mod, args, out: seen.__setitem__(mod, out)))
        whole = run(model)
    finally:
        for h in handles:
            h.remove()
    handles = []
    try:
        for m, slices in anchor["heads"].items():
            x = seen[m]
            keep = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
            for start, end in slices:
                keep[start:end] = 0
            fill = x.reshape(-1, x.shape[-1]).mean(0) * (1 - keep)
            handles.append(m.register_forward_pre_hook(lambda mod, args, keep=keep, fill=fill: (args[0] * keep + fill,) + tuple(args[1:])))
        for m in anchor["mlps"]:
            y = seen[m]
            mean = y.reshape(-1, y.shape[-1]).mean(0)
            handles.append(m.register_forward_hook(lambda mod, args, out, mean=mean: mean.expand_as(out)))
        alone = run(model)
    finally:
        for h in handles:
            h.remove()
    return whole, alone


def kl_rows(p_logits, q_logits):
    """KL(p || q) of the rows' next-token distributions, mean over rows."""
    log_p, log_q = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    return torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def faithfulness_anchor_loss(model, anchor, run, positions=None):
    """KL(whole model || circuit alone) at positions (bool [batch, seq]; None: all), mean over them."""
    whole, alone = circuit_alone(model, anchor, run)
    if positions is not None:
        whole, alone = whole[positions], alone[positions]
    return kl_rows(whole.reshape(-1, whole.shape[-1]), alone.reshape(-1, alone.shape[-1]))
`;
