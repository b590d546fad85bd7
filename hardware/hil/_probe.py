"""Does a runtime really run here? ``python -m edgefleet.hardware.hil._probe RUNTIME``.

Run under the emulated python by :func:`prepare_emulator`, once per runtime and in its own
process, because a runtime that the emulator cannot run dies with SIGSEGV (measured: LiteRT
when its interpreter is created under qemu 7.2, ONNX Runtime >= 1.31 at import). It builds a
one-op model (y = relu(x)) in memory, runs it, and checks the answer, so "imports" is never
mistaken for "runs". Only numpy, the runtime and the standard library are imported.
"""

from __future__ import annotations

import json
import sys

import numpy as np

__all__ = ["PROBES", "main", "onnx_relu_model", "tflite_relu_model"]

_X = np.array([[-1.0, 0.5, -2.0, 3.0]], dtype=np.float32)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value: int | bytes | str) -> bytes:
    """One protobuf field: an int as a varint, bytes/str length-delimited."""
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(raw)) + raw


def onnx_relu_model() -> bytes:
    """ONNX ModelProto for y = Relu(x), x: float32[batch, 4]; written field by field (the
    onnx package is not installed in the emulated root)."""

    def value_info(name: str) -> bytes:
        dims = _field(1, _field(2, "batch")) + _field(1, _field(1, 4))
        tensor = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
        return _field(1, name) + _field(2, _field(1, tensor))

    node = _field(1, "x") + _field(2, "y") + _field(4, "Relu")
    graph = _field(1, node) + _field(2, "probe") + _field(11, value_info("x"))
    graph += _field(12, value_info("y"))
    opset = _field(1, "") + _field(2, 17)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)  # ir_version 8


def tflite_relu_model() -> bytes:
    """TFLite flatbuffer for y = relu(x), x: float32[1, 4], built with LiteRT's own schema."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name: str, buffer: int):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 4], s.TensorType.FLOAT32, buffer, name
        return t

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.RELU
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs = [tensor("x", 1), tensor("y", 2)], [0], [1]
    graph.operators = [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [s.BufferT(), s.BufferT(), s.BufferT()]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _onnxruntime() -> tuple[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_relu_model(), providers=["CPUExecutionProvider"])
    return ort.__version__, sess.run(None, {"x": _X})[0]


def _litert() -> tuple[str, np.ndarray]:
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite_relu_model(), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], _X)
    it.invoke()
    return version("ai-edge-litert"), it.get_tensor(it.get_output_details()[0]["index"])


PROBES = {"onnxruntime": _onnxruntime, "litert": _litert}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in PROBES:
        print(f"usage: python -m edgefleet.hardware.hil._probe {{{','.join(PROBES)}}}",
              file=sys.stderr)  # fmt: skip
        return 2
    version, y = PROBES[argv[0]]()
    ok = bool(np.array_equal(y, np.maximum(_X, 0)))
    print(json.dumps({"runtime": argv[0], "version": version, "correct": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
