"""The memory benchmark on a GPU: ``torch.cuda.max_memory_allocated`` next to the exact saved-tensor bytes.

    .venv/bin/python benchmarks/gpu_memory.py [--batch 32] [--steps 4,8,16,32] [--subnets 1,2,4]
                                              [--models dvs-cnn,vgg11]

Same configurations as ``benchmarks/memory.py`` (one training batch + one Adam step per
method, K and T), run on ``cuda``. ``CUDA peak`` is the allocator's peak during the step
minus what was allocated before it (model, heads, the input batch), so it holds the
activations, gradients, Adam state and workspace; ratios are against bptt at the same T.
Where no CUDA device is present it prints why and exits 0 without writing results.
Writes ``benchmarks/results/gpu_memory.json`` and ``.png``.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import memory as bench  # noqa: E402  (benchmarks/memory.py: one definition of the measurement)

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    args = bench.arguments(__doc__.splitlines()[0], RESULTS / "gpu_memory.json").parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_memory: skipped - no CUDA device here (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}). The exact saved-tensor numbers are in benchmarks/memory.py.")
        return

    from stdl_edge.io import write_json

    name = torch.cuda.get_device_name(0)
    print(f"gpu_memory on {name}")
    steps, subnets = bench.ints(args.steps), bench.ints(args.subnets)
    bench.measure("dvs-cnn", "bptt", 1, steps[0], args.batch, "cuda", cuda=True)  # warm up kernels / cuDNN
    rows = bench.run(args.models.split(","), steps, subnets, args.batch, "cuda", cuda=True)
    print()
    print(bench.table(rows, cuda=True))
    print()
    for line in bench.targets(rows):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"benchmark": "gpu_memory", "device": name, "batch": args.batch, "host": platform.node(),
                          "torch": torch.__version__, "rows": rows, "targets": bench.targets(rows)})
    bench.plot(rows, args.out.with_suffix(".png"), key="cuda_peak_bytes")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
