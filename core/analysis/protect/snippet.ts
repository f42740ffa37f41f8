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
