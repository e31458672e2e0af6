"""Compare training methods on the built-in long-tailed benchmark, several seeds each.

Every run is an ordinary training run (the packaged ``default`` config plus the method's
overrides) in its own directory under ``--out``; finished runs (those with ``metrics.json``) are
not redone, so an interrupted comparison resumes.  Prints a Markdown table of mean and standard
deviation of overall / Many / Medium / Few accuracy and the training time per method.

    python benchmarks/methods_synthetic.py --out runs/bench-synth --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from shapmix.config import load_config
from shapmix.engine.trainer import train

# Method name -> config overrides, on top of the packaged default config.
METHODS: dict[str, list[str]] = {
    "CE": ["loss.name=ce", "method.name=none"],
    "Balanced Softmax": ["loss.name=balanced_softmax", "method.name=none"],
    "ST-Mix (BS)": ["loss.name=balanced_softmax", "method.name=stmix"],
    "Shap-Mix (BS)": ["loss.name=balanced_softmax", "method.name=shapmix", "method.interval=1"],
}
COLUMNS = ("top1", "many", "medium", "few", "class_mean")


def run_one(out: Path, overrides: list[str]) -> dict:
    metrics_path = out / "metrics.json"
    timing_path = out / "wall_seconds.txt"
    if metrics_path.exists() and timing_path.exists():
        return {**json.loads(metrics_path.read_text())["test"], "seconds": float(timing_path.read_text())}
    started = time.perf_counter()
    resume = (out / "last.pt").exists()
    result = train(load_config(None, overrides + ["log.progress=false"]), out, resume=resume)
    seconds = time.perf_counter() - started
    timing_path.write_text(f"{seconds:.1f}\n")
    return {**result["test"], "seconds": seconds}


def summarise(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return f"{present[0]:.1f}"
    return f"{statistics.mean(present):.1f} ± {statistics.stdev(present):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-synth"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every run")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.methods.split(",")]
    unknown = [name for name in chosen if name not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    for seed in range(args.seeds):
        for name in chosen:
            slug = name.lower().replace(" ", "_").replace("(", "").replace(")", "").replace("-", "")
            out = args.out / f"{slug}-seed{seed}"
            record = run_one(out, METHODS[name] + [f"train.seed={seed}"] + args.overrides)
            results[name].append(record)
            print(json.dumps({"method": name, "seed": seed, **{k: record[k] for k in (*COLUMNS, "seconds")}}), flush=True)
    header = "| method | overall | Many | Medium | Few | class-mean | train time (s) |"
    print("\n" + header + "\n|" + "---|" * 7)
    for name, records in results.items():
        cells = [summarise([r[c] for r in records]) for c in COLUMNS]
        cells.append(summarise([r["seconds"] for r in records]))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
