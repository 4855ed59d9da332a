#!/usr/bin/env python3
"""Loss curves of bench/precision_curves.sh side by side: OUT/precision_curves.png (one panel per
config: training loss, smoothed over 10 logged steps, and validation loss for each precision)
and a table of the final validation losses against fp32's (the issue's target: within 2%).

    python3 bench/plot_precision_curves.py OUT    (needs matplotlib: apt-get install python3-matplotlib)
"""
import glob
import json
import os
import sys


def load(path):
    train, val = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "loss" in r and "step" in r:
                train.append((r["step"], r["loss"]))
            if "val_loss" in r and "target_loss" not in r:
                val.append((r["step"], r["val_loss"]))
    return train, val


def main():
    out = sys.argv[1]
    runs = {}
    for p in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
        name = os.path.basename(p)[:-6]
        cfg, prec = name.rsplit("_", 1)
        runs.setdefault(cfg, {})[prec] = load(p)
    if not runs:
        sys.exit(f"no logs in {out}")
    ok = True
    print("| config | precision | final step | final validation loss | vs fp32 |")
    print("|---|---|---|---|---|")
    for cfg, by in runs.items():
        base = by.get("fp32", (None, []))[1]
        for prec in ["fp32", "tf32", "bf16", "fp16"]:
            if prec not in by or not by[prec][1]:
                continue
            step, v = by[prec][1][-1]
            rel = ""
            if base and prec != "fp32":
                d = (v - base[-1][1]) / base[-1][1]
                rel = f"{100 * d:+.2f}%"
                ok &= abs(d) <= 0.02 and step == base[-1][0]
            print(f"| {cfg} | {prec} | {step} | {v:.6f} | {rel} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.5), squeeze=False)
    for ax, (cfg, by) in zip(axes[0], runs.items()):
        for prec, (train, val) in sorted(by.items()):
            if train:
                s = [x for _, x in train]
                sm = [sum(s[max(0, i - 9):i + 1]) / len(s[max(0, i - 9):i + 1]) for i in range(len(s))]
                line, = ax.plot([t for t, _ in train], sm, lw=1, alpha=0.6, label=f"{prec} train")
                if val:
                    ax.plot([t for t, _ in val], [x for _, x in val], "o-", ms=3,
                            color=line.get_color(), label=f"{prec} validation")
        ax.set_title(cfg)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out, "precision_curves.png")
    fig.savefig(png, dpi=110)
    print(f"wrote {png}; every final validation loss within 2% of fp32's: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
