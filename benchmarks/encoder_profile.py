"""Where an encoder forward pass spends its time on CPU: fp32, bf16, int8 and torch.compile, plus a profile.

    python benchmarks/encoder_profile.py --model-dir runs/demo                 # fp32, bf16, int8, profile
    python benchmarks/encoder_profile.py --model-dir runs/demo --compile       # also torch.compile (slow)

Times one forward of ``--batch`` windows x ``--length`` tokens of the model directory's encoder
(median of ``--reps`` after two warm-up calls) in each precision, then prints the ``torch.profiler``
table of the bf16 forward (where the CPU supports bf16). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch


def bench(encoder, label: str, batch: int, length: int, reps: int) -> float:
    ids = torch.randint(5, 1000, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    with torch.inference_mode():
        for _ in range(2):
            encoder(input_ids=ids, attention_mask=mask)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            encoder(input_ids=ids, attention_mask=mask)
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"{label:32s} {batch}x{length}: {med * 1000:7.0f} ms  {batch * length / med:8.0f} tokens/s", flush=True)
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=Path("runs/demo"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor, freezing)")
    args = ap.parse_args()

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from torch.profiler import ProfilerActivity, profile

    from sikap.inference.predict import cpu_supports_bf16
    from sikap.modeldir import load_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = {"batch": args.batch, "length": args.length, "reps": args.reps}
    fp32 = load_model_dir(args.model_dir).model.encoder.float().eval()
    print(f"{args.model_dir}: {torch.get_num_threads()} threads, attention {fp32.config._attn_implementation}")
    base = bench(fp32, "fp32", **shape)
    q = quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    t = bench(q, "int8 dynamic (per-channel)", **shape)
    print(f"{'':32s} {base / t:.2f}x fp32")
    if not cpu_supports_bf16():
        print("this CPU has no native bf16: bf16 skipped")
        return
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    t = bench(bf16, "bf16 weights", **shape)
    print(f"{'':32s} {base / t:.2f}x fp32")
    ids = torch.randint(5, 1000, (args.batch, args.length))
    mask = torch.ones_like(ids)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            bf16(input_ids=ids, attention_mask=mask)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        start = time.perf_counter()
        compiled = torch.compile(bf16)
        t = bench(compiled, "bf16 + torch.compile", **shape)
        print(f"{'':32s} {base / t:.2f}x fp32 ({time.perf_counter() - start:.0f} s including compilation)")


if __name__ == "__main__":
    main()
