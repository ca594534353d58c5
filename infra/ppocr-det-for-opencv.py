#!/usr/bin/env python3
"""Rewrites PaddleOCR's PP-OCRv4 text detector (ONNX, from PyPI's rapidocr-onnxruntime) so
Debian's OpenCV 4.6 dnn can load it.

The model's 24 Clip nodes take their min/max as tensor inputs (from Constant nodes), which the
OpenCV 4.6 ONNX importer rejects; each becomes a Clip with constant min/max attributes, the form
that importer maps to its ReLU6 layer. Nothing else changes (checked: the rewritten model in
OpenCV gives the original's output in onnxruntime to within 4e-7).

Usage: ppocr-det-for-opencv.py IN.onnx OUT.onnx   (needs the `onnx` package)
"""
import sys

import onnx
from onnx import helper, numpy_helper


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model = onnx.load(sys.argv[1])
    graph = model.graph
    consts = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    rewritten, nodes = 0, []
    for node in graph.node:
        if node.op_type == "Clip" and len(node.input) == 3 and node.input[1] in consts and node.input[2] in consts:
            lo, hi = float(consts[node.input[1]]), float(consts[node.input[2]])
            nodes.append(helper.make_node("Clip", [node.input[0]], list(node.output), name=node.name, min=lo, max=hi))
            rewritten += 1
        else:
            nodes.append(node)
    if rewritten == 0:
        sys.exit(f"{sys.argv[1]}: no Clip node with constant min/max inputs; not the expected model")
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, sys.argv[2])
    print(f"ppocr-det-for-opencv: {rewritten} Clip nodes rewritten -> {sys.argv[2]}")


if __name__ == "__main__":
    main()
