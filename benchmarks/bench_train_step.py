"""Training step throughput: images/s of one jitted train step (forward, backward, Adam with the 13 groups).

  python benchmarks/bench_train_step.py [--batch 8] [--size 368] [--stages 1] [--steps 5]

Batch 8, 368x368 crops, 1 refinement stage, compile excluded, float32 and bfloat16 compute, on CPU; on
every accelerator present too. Baseline: the original PyTorch step on the same 2-core CPU, 3.487 s/step
= 2.29 images/s (/work/shared/reference/baselines_original.md; it measured ~3.3 s/step in a quiet window).
The CPU is shared: the median of --steps timed steps is reported, with the minimum.

Where CPU time goes (jax.profiler trace of one step, per HLO op): the 3x3 128->128 convs (their kernel
gradients most), the pointwise matmuls, the depthwise shifted products. XLA:CPU mallocs the step's
temporaries (2.3 GB) afresh on every call; by default glibc maps and unmaps them each step (~0.3M page
faults, 4.15 s per step). Like train.py, this script first calls ``host_heap.keep_freed_memory`` (the
heap keeps them: 3.46 s); ``LWOP_JAX_KEEP_FREED_MEMORY=0`` measures without it.

Tried for the 3x3 128->128 convs, on 8x46x46x128 (one such conv, forward + both gradients), all slower
than XLA's own conv on this CPU: Winograd F(2x2, 3x3) written in jnp 179 ms vs 90 ms (dilation 2: 231
vs 116); the kernel gradient as one im2col matmul 100 ms or 9 shifted matmuls 86 ms vs 33 ms; bfloat16
88 ms vs 96 ms (the whole step in bfloat16 is slower, see the table). XLA's conv runs at ~80 GMAC/s
on the 2 cores, close to their float32 peak.
"""

import argparse

import bench_gpu  # beside this script: the same step measurement
import jax

from lwop_jax.training import host_heap

ORIGINAL_CPU_IMAGES_PER_SEC = 2.29


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=368)
    parser.add_argument('--stages', type=int, default=1)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--gpu-batch', type=int, default=80, help='also time this batch on accelerators')
    parser.add_argument('--skip-cpu', action='store_true', help='time accelerators only')
    args = parser.parse_args()
    kept = host_heap.keep_freed_memory()  # before jax.devices() starts the CPU client's threads
    print(f'jax {jax.__version__}, devices: {jax.devices()}; freed host memory kept: {kept}')
    print(f'train step, {args.size}x{args.size}, {args.stages} refinement stage(s), compile excluded')
    print(
        f'{"device":<28}{"dtype":<10}{"batch":>6}{"compile s":>11}{"median s":>10}{"min s":>8}'
        f'{"images/s":>10}{"vs original CPU":>17}'
    )
    runs = [] if args.skip_cpu else [(jax.devices('cpu')[0], args.batch)]
    accelerators = [d for d in jax.devices() if d.platform != 'cpu']
    runs += [(d, b) for d in accelerators[:1] for b in sorted({args.batch, args.gpu_batch})]
    for device, batch in runs:
        for dtype in ('float32', 'bfloat16'):
            # The same measurement as the GPU benchmark's (one step function, timed the same way).
            result = bench_gpu.run_jax(batch, args.size, args.stages, dtype, 'auto', args.steps, device=device)
            rate = result['images_per_s']
            print(
                f'{str(device):<28}{dtype:<10}{batch:>6}{result["compile_s"]:>11.1f}{result["step_ms"] / 1000:>10.3f}'
                f'{result["min_step_ms"] / 1000:>8.3f}{rate:>10.2f}{rate / ORIGINAL_CPU_IMAGES_PER_SEC:>16.2f}x',
                flush=True,
            )


if __name__ == '__main__':
    main()
