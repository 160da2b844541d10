"""gpu_torch.py - the baseline of bench/gpu_gemm.c: torch.matmul of two bf16
n x n matrices (B transposed, as gemm_nt) on the GPU, timed with CUDA
events, median of 10 after a warm-up. Prints "n seconds" per size; prints
nothing when torch or a GPU is missing."""
import sys

try:
    import torch
except ImportError:
    sys.exit(0)
if not torch.cuda.is_available():
    sys.exit(0)
for arg in sys.argv[1:]:
    n = int(arg)
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    torch.matmul(a, b.t())
    times = []
    for _ in range(10):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(a, b.t())
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    print(n, times[len(times) // 2], flush=True)
