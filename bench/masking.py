"""Peak memory and step time of one training step against the masking ratio, ViT-B/32 shape on this CPU.

Each configuration runs in a fresh process, so its peak resident memory is its own: we report the growth
of peak RSS over the resident size just before the step (activations + gradients + optimizer state).

usage: python bench/masking.py [--frames 32 128] [--ratios 0 0.5 0.75] [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def one_step(frames: int, ratio: float, batch: int) -> dict:
    import torch

    from vidsearch import registry
    from vidsearch.loss import ContrastiveLoss

    torch.manual_seed(0)
    config, _ = registry.resolve("longvivit-b32")
    model = registry.build_model(config, load_pretrained=False).train()  # random weights: same shape and cost
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    video = torch.randn(batch, frames, 3, model.image_size, model.image_size)
    tokens = torch.randint(0, 49408, (batch, 77))
    before = _rss_kib()
    started = time.perf_counter()
    video_emb, text_emb = model(video, tokens, keep_ratio=1.0 - ratio)
    ContrastiveLoss()(video_emb, text_emb, model.logit_scale).backward()
    optimizer.step()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"frames": frames, "mask_ratio": ratio, "batch": batch, "step_seconds": seconds,
            "peak_growth_mib": max(0, peak - before) / 1024, "threads": torch.get_num_threads()}


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (resource.getpagesize() // 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 128], help="frames per clip")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.5, 0.75], help="masking ratios")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--child", nargs=3, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_step(int(args.child[0]), args.child[1], int(args.child[2]))))
        return
    rows = []
    for frames in args.frames:
        for ratio in args.ratios:
            out = subprocess.run([sys.executable, __file__, "--child", str(frames), str(ratio), str(args.batch)],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"machine: {platform.machine()}, {rows[0]['threads']} torch threads; ViT-B/32 shape (random weights), "
          f"joint attention, batch {args.batch}, forward + backward + AdamW step\n")
    print("| frames | mask ratio | tokens per clip | step s | peak memory growth MiB | memory vs mask 0 | time vs mask 0 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["frames"] == row["frames"] and r["mask_ratio"] == 0.0)
        tokens = row["frames"] * (1 + round(49 * (1 - row["mask_ratio"])))
        print(f"| {row['frames']} | {row['mask_ratio']:.2f} | {tokens} | {row['step_seconds']:.2f} | "
              f"{row['peak_growth_mib']:.0f} | {base['peak_growth_mib'] / max(row['peak_growth_mib'], 1):.2f}x less | "
              f"{base['step_seconds'] / row['step_seconds']:.2f}x faster |")


if __name__ == "__main__":
    main()
