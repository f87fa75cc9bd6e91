"""int8 on the CPU: does ONNX Runtime quantization of a bundled model keep its quality?

    python3 scripts/int8_cpu.py [--weights default] [--eval 32] [--calib 24] [--json out.json]

Variants of the same ONNX export (tint.onnx_runtime.export):
    fp32            the export as tint runs it (the reference here)
    int8-dynamic    quantize_dynamic: Conv weights int8, activations quantized per call (ConvInteger)
    int8-static     quantize_static, QDQ, per-channel int8 weights, uint8 activations calibrated
                    (MinMax) on --calib dev photos disjoint from the evaluated ones; Conv only,
                    so the bin softmax readout and the upsample stay float

Quality: tint.evaluate.evaluate over the first --eval dev photos (PSNR, colorfulness,
gray PSNR) through Runner.colorize_array with the network swapped (Runner.use_network); plus PSNR of each
variant against the fp32 output.  Speed: the network alone at 256x256, each variant timed
in alternating pairs with fp32 (median ratio).  Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="default")
    ap.add_argument("--eval", type=int, default=32)
    ap.add_argument("--calib", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    from tint.api import Runner
    from tint.training.evaluate import evaluate, load_truth, psnr, truth_files
    from tint.engine.onnx import OnnxNetwork, export

    files = truth_files(DEV)
    if len(files) < a.eval + a.calib:
        sys.exit(f"need {a.eval + a.calib} photos in {DEV}, found {len(files)}")
    eval_files, calib_files = files[:a.eval], files[-a.calib:]
    runner = Runner(a.weights, device="cpu", backend="onnx")
    tmp = Path(tempfile.mkdtemp(prefix="tint-int8-"))
    fp32_path = tmp / "fp32.onnx"
    export(runner.model, fp32_path)

    def calib_inputs():
        for f in calib_files:
            pipe = runner.pipeline
            yield pipe.to_work(pipe.lightness_u8(torch.from_numpy(load_truth(f))[None])).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib_inputs())

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"L": x}

    t = time.perf_counter()
    quantize_dynamic(str(fp32_path), str(tmp / "dyn.onnx"), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    t_dyn = time.perf_counter() - t
    t = time.perf_counter()
    quantize_static(str(fp32_path), str(tmp / "static.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=["Conv"])
    t_static = time.perf_counter() - t
    nets = {"fp32": runner.network}
    for name, p in (("int8-dynamic", "dyn.onnx"), ("int8-static", "static.onnx")):
        try:
            nets[name] = OnnxNetwork((tmp / p).read_bytes(), runner.model.multiple)
        except Exception as e:                     # an unsupported op is a finding, not a crash
            print(f"{name}: session failed: {type(e).__name__}: {e}", file=sys.stderr)

    truths = [load_truth(f) for f in eval_files]
    results, outs = {}, {}
    for name, net in nets.items():
        runner.use_network(net, name)
        got = []

        def fn(truth):
            got.append(runner.colorize_array(truth))
            return got[-1]
        report, _ = evaluate(fn, truths, with_ssim=False)
        outs[name] = got
        m = report["means"] if "means" in report else report
        results[name] = {k: m[k] for k in ("psnr", "gray_psnr", "colorfulness", "colorfulness_truth", "l1_ab")
                         if k in m}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    for name in nets:
        results[name]["psnr_vs_fp32"] = float(np.mean([psnr(o, r) for o, r in zip(outs[name], outs["fp32"])]))

    L = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0)) * 100
    for name, net in nets.items():
        if name == "fp32":
            continue
        for _ in range(2):
            nets["fp32"](L), net(L)
        f, q = [], []
        for i in range(a.repeats):
            order = ((nets["fp32"], f), (net, q)) if i % 2 == 0 else ((net, q), (nets["fp32"], f))
            for n, acc in order:
                t = time.perf_counter()
                n(L)
                acc.append((time.perf_counter() - t) * 1e3)
        results[name].update(net_ms=statistics.median(q), fp32_net_ms=statistics.median(f),
                             speedup_vs_fp32=statistics.median(x / y for x, y in zip(f, q)))
    out = {"weights": a.weights, "eval_photos": len(truths), "calib_photos": len(calib_files),
           "quantize_s": {"dynamic": round(t_dyn, 1), "static": round(t_static, 1)},
           "threads": torch.get_num_threads(), "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
