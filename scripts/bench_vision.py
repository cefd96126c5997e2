"""Benchmark of the vision sidecar against baselines measured in the same run.

1. PGD (Linf and L2) examples/second: ``robusttext_vision.attacks.pgd`` vs ``torchattacks`` 3.5.1 (``PGD``,
   ``PGDL2``) on the same model, inputs, eps, step size and steps; prints both success rates.
2. CERTIFY noisy samples/second: ``robusttext_vision.smoothing.SmoothedImageClassifier.certify`` with its defaults
   (samples of many images pooled into full batches; on the CPU a frozen, oneDNN-fused copy of a conv
   net) vs a straightforward per-image loop (Cohen et al.'s reference ``Smooth.certify``: per image,
   ``n0`` then ``n`` samples in batches of ``batch_size``, on the model as loaded), with the same base
   classifier, budget and batch size. Each lever is also shown alone: the engine on the eager model
   (batching across images) and the per-image loop on the frozen model (the inference lever).

    pip install --no-deps torchattacks==3.5.1   # the baseline; --no-deps: its requests~=2.25 pin breaks datasets
    OMP_NUM_THREADS=1 python scripts/bench_vision.py                       # models from the compare run
    python scripts/bench_vision.py --model-dir runs/vision/compare/models/pgd --images 500

Run it on an otherwise idle machine for stable numbers; every ratio compares two timings of this run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from robusttext_vision.attacks import pgd
from robusttext_vision.data import load_images
from robusttext_vision.models import build_model, load_model
from robusttext_vision.inference import freeze_for_cpu
from robusttext_vision.smoothing import SmoothedImageClassifier


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int) -> list[dict]:
    try:
        import torchattacks
    except ImportError as err:
        raise SystemExit("the PGD baseline needs torchattacks: pip install --no-deps torchattacks==3.5.1") from err

    rows = []
    for norm, eps in (("linf", 0.3), ("l2", 2.0)):
        alpha = 2.5 * eps / steps
        ta = (torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True) if norm == "linf"
              else torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True))
        torch.manual_seed(0)

        def run_ta():  # adversarial examples + per-example success, what robusttext_vision.attacks.pgd returns
            adv = ta(x, y)
            with torch.no_grad():
                return model(adv).argmax(1) != y

        t_ta, ta_fooled = timed(run_ta, repeats)
        ta_success = float(ta_fooled.float().mean())
        for early in (True, False):
            t_ours, res = timed(lambda: pgd(model, x, y, eps, norm, steps=steps, step_size=alpha, early_stop=early,
                                            generator=torch.Generator().manual_seed(0)), repeats)
            rows.append({"norm": norm, "eps": eps, "early_stop": early, "ours_per_s": len(x) / t_ours,
                         "torchattacks_per_s": len(x) / t_ta, "ratio": t_ta / t_ours,
                         "ours_success": res.success_rate, "torchattacks_success": ta_success})
    return rows


def per_image_certify(model: torch.nn.Module, x: torch.Tensor, num_classes: int, sigma: float, n0: int, n: int,
                      alpha: float, batch_size: int) -> tuple[int, float]:
    """Cohen et al.'s reference CERTIFY for one image (torch noise, batches of ``batch_size``)."""

    def sample(num: int) -> np.ndarray:
        counts = np.zeros(num_classes, dtype=np.int64)
        with torch.no_grad():
            while num > 0:
                b = min(batch_size, num)
                num -= b
                batch = x.repeat((b, 1, 1, 1))
                pred = model(batch + torch.randn_like(batch) * sigma).argmax(1)
                counts += np.bincount(pred.numpy(), minlength=num_classes)
        return counts

    top = int(sample(n0).argmax())
    k = int(sample(n)[top])
    p_lower = stats.beta.ppf(alpha, k, n - k + 1) if k > 0 else 0.0
    return (top, sigma * stats.norm.ppf(p_lower)) if p_lower > 0.5 else (-1, -1.0)


def bench_certify(model: torch.nn.Module, x: torch.Tensor, num_classes: int, sigma: float, n0: int, n: int,
                  batch_size: int) -> dict:
    alpha = 0.001
    model.eval()

    def loop(net: torch.nn.Module) -> list:
        return [per_image_certify(net, xi[None], num_classes, sigma, n0, n, alpha, batch_size) for xi in x]

    t_loop, base = timed(lambda: loop(model), 2)
    t_freeze, frozen = timed(lambda: freeze_for_cpu(model, x[:1].repeat(batch_size, 1, 1, 1)))
    t_loop_frozen, _ = timed(lambda: loop(frozen or model), 2)
    # the engine on the eager model as loaded: batching across images alone
    eager = SmoothedImageClassifier(model, num_classes, sigma, batch_size=batch_size, seed=0, channels_last=False,
                                    optimize=False)
    t_eager, _ = timed(lambda: eager.certify(x, n0=n0, n=n, alpha=alpha), 2)
    clf = SmoothedImageClassifier(model, num_classes, sigma, batch_size=batch_size, seed=0)
    t_eng, ours = timed(lambda: clf.certify(x, n0=n0, n=n, alpha=alpha), 2)  # best of 2: the freeze is timed apart
    model.to(memory_format=torch.contiguous_format)  # the next baseline runs on the model as loaded
    samples = len(x) * (n0 + n)
    agree = np.mean([a.prediction == b[0] for a, b in zip(ours, base)])
    return {"images": len(x), "n0": n0, "n": n, "batch_size": batch_size, "engine_samples_per_s": samples / t_eng,
            "engine_eager_samples_per_s": samples / t_eager, "per_image_loop_samples_per_s": samples / t_loop,
            "per_image_loop_frozen_samples_per_s": samples / t_loop_frozen,
            "ratio": t_loop / t_eng, "ratio_batching": t_loop / t_eager, "ratio_frozen_loop": t_loop_frozen / t_eng,
            "freeze_seconds": t_freeze if frozen is not None else 0.0, "prediction_agreement": agree}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default="runs/vision/compare/models/standard",
                    help="a saved CNN (default: the compare run's normal model; a quick one is trained if absent)")
    ap.add_argument("--robust-model-dir", default="runs/vision/compare/models/pgd", help="a PGD-AT model (optional)")
    ap.add_argument("--images", type=int, default=500, help="MNIST images attacked (eval split test[8000:])")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings per attack")
    ap.add_argument("--certify-images", type=int, default=100)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 200, 1000])
    ap.add_argument("--only", choices=["pgd", "certify"], help="run one of the two benchmarks")
    ap.add_argument("--sigma", type=float, default=0.5)
    args = ap.parse_args()

    data = load_images("mnist", "test[8000:]", max_examples=max(args.images, args.certify_images))
    x, y = data.images[: args.images], data.labels[: args.images]
    models = {}
    for name, d in (("normal", args.model_dir), ("PGD-AT", args.robust_model_dir)):
        if Path(d, "model.pt").exists():
            models[name] = load_model(d)[0]
    if not models:
        from robusttext_vision.adversarial import train_classifier
        from robusttext_vision.training import FitConfig

        print("no saved model found: training a standard CNN for 1 epoch on test[:8000]")
        train = load_images("mnist", "test[:8000]")
        m = build_model("cnn", 1, 10, 28)
        train_classifier(m, train.images, train.labels, "standard", FitConfig(epochs=1), "runs/vision/bench_model")
        models["normal"] = m.eval()
    print(f"torch threads: {torch.get_num_threads()}")
    if args.only != "certify":
        run_pgd(models, x, y, args.steps, args.repeats)
    if args.only != "pgd":
        run_certify(models.get("normal") or next(iter(models.values())), data.images[: args.certify_images], args)


def run_pgd(models: dict, x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int) -> None:
    print(f"\n== PGD, {len(x)} MNIST images, {steps} steps, step 2.5*eps/steps, random start ==")
    print(f"{'model':8} {'norm':5} {'eps':>4} {'early':>5} {'ours/s':>9} {'torchattacks/s':>15} {'ratio':>6} "
          f"{'success ours':>13} {'success ta':>11}")
    for name, model in models.items():
        model.eval()
        for r in bench_pgd(model, x, y, steps, repeats):
            print(f"{name:8} {r['norm']:5} {r['eps']:>4g} {str(r['early_stop']):>5} {r['ours_per_s']:>9.1f} "
                  f"{r['torchattacks_per_s']:>15.1f} {r['ratio']:>5.2f}x {r['ours_success']:>13.3f} "
                  f"{r['torchattacks_success']:>11.3f}")


def run_certify(model: torch.nn.Module, xc: torch.Tensor, args: argparse.Namespace) -> None:
    print(f"\n== CERTIFY, {len(xc)} MNIST images, sigma={args.sigma}, n0={args.n0}, n={args.n}, alpha=0.001 ==")
    print("samples/s: engine (default) | engine on the eager model (batching alone) | per-image loop | "
          "per-image loop on the frozen model (inference lever alone);")
    print("ratios: default vs loop | batching alone (engine eager vs loop) | batching on the frozen model; "
          "freeze: the one-time trace of the model (once per run, not in the timings)")
    print(f"{'model':8} {'batch':>6} {'engine':>8} {'eng.eager':>9} {'loop':>8} {'loop frz':>8} {'ratio':>6} "
          f"{'batching':>8} {'frozen':>7} {'agree':>6} {'freeze s':>8}")
    linear = build_model("linear", 1, 10, 28)
    torch.manual_seed(0)
    for name, m in (("cnn", model), ("linear", linear)):
        for bs in args.batch_sizes:
            r = bench_certify(m, xc, 10, args.sigma, args.n0, args.n, bs)
            print(f"{name:8} {bs:>6} {r['engine_samples_per_s']:>8.0f} {r['engine_eager_samples_per_s']:>9.0f} "
                  f"{r['per_image_loop_samples_per_s']:>8.0f} {r['per_image_loop_frozen_samples_per_s']:>8.0f} "
                  f"{r['ratio']:>5.2f}x {r['ratio_batching']:>7.2f}x {r['ratio_frozen_loop']:>6.2f}x "
                  f"{r['prediction_agreement']:>6.2f} {r['freeze_seconds']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
