#!/usr/bin/python3
"""A weight-only QDQ export of a zoo model: each weight matrix stored as int8 with a per-output-channel float32
scale (zero point 0, symmetric, round half to even, scale = max|w| / 127) and a DequantizeLinear in front of its
reader, the layout onnxruntime's QDQ quantizer writes for weights (activations stay float).

    /usr/bin/python3 scripts/make_qdq_export.py test/fixtures/zoo/llama/model.onnx test/fixtures/sensitivity/llama-qdq.onnx

The matrices are those a MatMul reads as B ([in, out]: one scale per column) and the embedding table a Gather
reads (one scale per row). With that rounding the export's weights equal `circuitlens sensitivity --quantize int8
--scope all` on the float model entry for entry (test/cli/sensitivity.test.ts runs both). onnx only (1.12), seconds.
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def main(src, dst):
    m = onnx.load(src)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    readers = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            readers.setdefault(x, []).append((n, i))
    new_inits, dq_nodes, renamed = [], [], {}
    for name, t in inits.items():
        if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) != 2:
            continue
        users = readers.get(name, [])
        if not users or not all((n.op_type == "MatMul" and i == 1) or (n.op_type == "Gather" and i == 0) for n, i in users):
            continue
        axis = 1 if users[0][0].op_type == "MatMul" else 0
        w = numpy_helper.to_array(t).astype(np.float32)
        absmax = np.abs(w).max(axis=1 - axis)
        scale = (absmax / np.float32(127)).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
        shape = (1, -1) if axis == 1 else (-1, 1)
        q = np.clip(np.round((w / safe.reshape(shape)).astype(np.float32)), -127, 127).astype(np.int8)
        new_inits += [numpy_helper.from_array(q, name + "_quantized"), numpy_helper.from_array(scale, name + "_scale"),
                      numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), name + "_zero_point")]
        out = name + "_dequantized"
        dq_nodes.append(helper.make_node("DequantizeLinear", [name + "_quantized", name + "_scale", name + "_zero_point"], [out], name=name + "_DequantizeLinear", axis=axis))
        renamed[name] = out
    for n in g.node:
        for i, x in enumerate(n.input):
            if x in renamed:
                n.input[i] = renamed[x]
    keep = [t for t in g.initializer if t.name not in renamed]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(dq_nodes + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    print(f"{dst}: {len(renamed)} weight matrices as int8 + per-channel scale (DequantizeLinear)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
