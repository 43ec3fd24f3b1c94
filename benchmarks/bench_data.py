"""Epoch time on CIFAR-shaped data: tensors on the device vs DataLoaders with worker processes.

Usage: python benchmarks/bench_data.py [--device cpu|cuda] [--n 10000] [--model mlp|cnn:16,32|resnet18-cifar]
       [--workers 2] [--repeats 2] [--augment crop-flip] [--batch-size 128] [--threads 2]

Synthetic CIFAR-shaped data (N images of 3x32x32, 10 classes) and one model; each path trains
whole epochs with the same optimiser, batch size and augmentation, interleaved over the repeats
so that drifts in machine load hit all alike, and the median and fastest seconds per epoch are
printed with their ratios to the first path (on a shared machine the fastest run is the steadier
figure):

1. ``device``:  bench.nn.training.train_epochs on tensors on the device, augmentation on the device
   (what the harness does for data under the threshold in bench/nn/training.py);
2. ``stream``:  the same function with the tensors in (pinned) host memory and batches fetched by
   a DataLoader with ``--workers`` processes (what the harness does above the threshold);
3. ``torchvision``: the usual recipe: a per-image Dataset with torchvision's RandomCrop(32,
   padding=4) + RandomHorizontalFlip transforms in ``--workers`` DataLoader processes,
   collated and copied to the device per batch.

Needs torch and torchvision only (and timm for ``--model resnet18-cifar``); runs without ray,
mlflow or pluggy installed and without installing this project (the bench core modules it uses
are loaded from the source tree). The default model (an MLP 3072-256-10) is small so that the data
path, not the model, dominates the epoch; ``--model cnn:16,32`` or ``resnet18-cifar`` measure
realistic training, where on a CPU the model's compute dominates. The default run takes well
under two minutes on 2 CPU cores; on a GPU:
``python benchmarks/bench_data.py --device cuda --model resnet18-cifar --repeats 3 --workers 8``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F


def _bench_core():
    """``bench.nn.training`` and ``bench.nn.nets``; without pluggy (or an install), straight from the
    source tree without running ``bench/__init__.py`` (they need only torch)."""
    try:
        import bench.nn.nets
        import bench.nn.training

        return bench.nn.training, bench.nn.nets
    except ImportError:
        for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
            del sys.modules[name]
        pkg = types.ModuleType("bench")
        pkg.__path__ = [str(Path(__file__).resolve().parents[1] / "bench")]
        sys.modules["bench"] = pkg
        import bench.nn.nets
        import bench.nn.training

        return bench.nn.training, bench.nn.nets


training, nets = _bench_core()


def make_model(spec: str, device):
    if spec == "resnet18-cifar":
        from bench.nn.resnet_cifar import resnet18_cifar

        model = resnet18_cifar(10)
    elif spec == "mlp":
        model = nets.MLP(3 * 32 * 32, (256,), 10)
    elif spec.startswith("cnn"):
        widths = tuple(int(v) for v in (spec.partition(":")[2] or "32,64").split(","))
        model = nets.SmallCNN(3, 10, widths)
    else:
        raise SystemExit(f"unknown --model {spec!r}: mlp, cnn[:W1,W2] or resnet18-cifar")
    return model.to(device)


KW = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="constant")


def epoch_device(model, x, y, args):
    training.train_epochs(model, x, y, epochs=1, batch_size=args.batch_size, seed=0, augment=args.augment, **KW)


def epoch_stream(model, x_host, y_host, args):
    training.train_epochs(model, x_host, y_host, epochs=1, batch_size=args.batch_size, seed=0, augment=args.augment,
                          workers=args.workers, **KW)


class PerImage(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def epoch_torchvision(model, x_host, y_host, args, device):
    from torchvision import transforms

    tf = [transforms.RandomCrop(32, padding=4, padding_mode="reflect"), transforms.RandomHorizontalFlip()]
    tf = transforms.Compose(tf if args.augment == "crop-flip" else [])
    loader = torch.utils.data.DataLoader(PerImage(x_host, y_host, tf), batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(0))
    opt = training.make_optimizer(model.parameters(), KW["optimizer"], KW["lr"], KW["momentum"], KW["weight_decay"])
    model.train()
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--augment", default="crop-flip", choices=("crop-flip", "none"))
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    args = ap.parse_args()
    device = torch.device(args.device)
    training.set_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x_host = torch.randn(args.n, 3, 32, 32, generator=g)
    y_host = torch.randint(0, 10, (args.n,), generator=g)
    if device.type == "cuda":
        x_host, y_host = x_host.pin_memory(), y_host.pin_memory()
    x_dev, y_dev = x_host.to(device), y_host.to(device)
    paths = {
        "device": lambda m: epoch_device(m, x_dev, y_dev, args),
        "stream": lambda m: epoch_stream(m, x_host, y_host, args),
        "torchvision": lambda m: epoch_torchvision(m, x_host, y_host, args, device),
    }
    print(f"{args.n} images 3x32x32, model {args.model}, batch {args.batch_size}, augment {args.augment}, "
          f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"{args.workers} DataLoader workers, {torch.get_num_threads()} torch threads")
    training.warm_up(make_model(args.model, device), x_dev[:64], y_dev[:64])
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(args.repeats):
        for name, run in paths.items():
            torch.manual_seed(0)
            model = make_model(args.model, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            run(model)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - t0)
    base, base_min = statistics.median(times["device"]), min(times["device"])
    print("path         median s/epoch (ratio to device)   fastest (ratio)   all runs")
    for name, ts in times.items():
        med, low = statistics.median(ts), min(ts)
        print(f"{name:<12} {med:8.2f} (x{med / base:5.2f})              {low:6.2f} (x{low / base_min:5.2f})    "
              f"{', '.join(f'{t:.2f}' for t in ts)}")


if __name__ == "__main__":
    main()
