"""gpu_torch.py - the PyTorch baselines of the GPU benchmarks, on the GPU,
timed with CUDA events, median of 10 after a warm-up. Prints one line per
measurement, "what seconds"; prints nothing when torch or a GPU is missing.
  gpu_torch.py N [N...]            bf16 torch.matmul of two N x N matrices
                                   (B transposed, as gemm_nt): bench/gpu_gemm.c
  gpu_torch.py indexer S           V4's indexer for one query over S keys
                                   (64 heads x 128, bf16): ReLU(q k^T)
                                   weighted over the heads, then top-512
  gpu_torch.py moe T E K DM I      the MoE experts as a loop of per-expert
                                   torch.matmul (bf16; SwiGLU; random top-K
                                   routing of T tokens over E experts)
The last two are bench/gpu_v4.c's."""
import sys

try:
    import torch
except ImportError:
    sys.exit(0)
if not torch.cuda.is_available():
    sys.exit(0)


def timed(fn):
    fn()
    times = []
    for _ in range(10):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


args = sys.argv[1:]
if args and args[0] == "indexer":
    s = int(args[1])
    q = torch.randn(64, 128, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(s, 128, dtype=torch.bfloat16, device="cuda")
    w = torch.randn(64, dtype=torch.float32, device="cuda")

    def indexer():
        scores = (torch.relu((q @ k.t()).float()) * w[:, None]).sum(0)
        return torch.topk(scores, 512).indices

    print("indexer", timed(indexer), flush=True)
elif args and args[0] == "moe":
    t, e, kk, dm, inter = (int(a) for a in args[1:6])
    x = torch.randn(t, dm, dtype=torch.bfloat16, device="cuda")
    w1 = torch.randn(e, inter, dm, dtype=torch.bfloat16, device="cuda") * 0.02
    w3 = torch.randn(e, inter, dm, dtype=torch.bfloat16, device="cuda") * 0.02
    w2 = torch.randn(e, dm, inter, dtype=torch.bfloat16, device="cuda") * 0.02
    experts = torch.rand(t, e, device="cuda").topk(kk, dim=1).indices
    rows = [torch.nonzero(experts == i)[:, 0] for i in range(e)]

    def moe():
        y = torch.zeros(t, dm, dtype=torch.bfloat16, device="cuda")
        for i in range(e):
            xi = x[rows[i]]
            h = torch.nn.functional.silu(xi @ w1[i].t()) * (xi @ w3[i].t())
            y.index_add_(0, rows[i], h @ w2[i].t())
        return y

    print("moe", timed(moe), flush=True)
else:
    for arg in args:
        n = int(arg)
        a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
        b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
        print(n, timed(lambda: torch.matmul(a, b.t())), flush=True)
