"""Write scikit-learn's digits as a folder of PNG images with some labels wrong on purpose.

    python examples/annotation/make_noisy_digits.py [OUT_DIR] [--noise 0.08] [--seed 0]

OUT_DIR (default examples/annotation/noisy-digits) gets one 8x8 grayscale PNG per sample,
labels.csv (file,label,owner,id) with `noise` of the labels replaced by another class, and
flipped.txt listing the ids whose label is wrong (the answer key: Shardwise never reads it).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=str(Path(__file__).with_name("noisy-digits")))
    ap.add_argument("--noise", type=float, default=0.08, help="fraction of labels to flip (default 0.08)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(args.seed)
    flip = rng.choice(len(y), size=int(round(args.noise * len(y))), replace=False)
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, 10, size=flip.size)) % 10  # always another class
    with (out / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "owner", "id"])
        for i, (img, label) in enumerate(zip(x, noisy)):
            name = f"{i:05d}.png"
            Image.fromarray((img.reshape(8, 8) * 255 / 16).astype(np.uint8)).save(out / name)
            w.writerow([name, int(label), f"subject-{i // 20:04d}", f"digit-{i:05d}"])
    (out / "flipped.txt").write_text("".join(f"digit-{i:05d}\n" for i in sorted(flip)))
    print(f"{len(y)} images in {out}, {flip.size} labels flipped (ids in {out / 'flipped.txt'})")


if __name__ == "__main__":
    main()
