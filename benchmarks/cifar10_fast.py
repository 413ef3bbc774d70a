"""CIFAR-10, airbench94's recipe: jaxcnn (`cifar10_fast`) and the same recipe in PyTorch.

    python benchmarks/cifar10_fast.py --framework jaxcnn --epochs 9.9 --json out.json   # a full run
    python benchmarks/cifar10_fast.py --framework pytorch --epochs 1                    # one epoch, img/s

jaxcnn: `jaxcnn.speedrun.train` with `CIFAR10_FAST` (test accuracy after every epoch, TTA at the
end). PyTorch: airbench94's network, optimizer (SGD Nesterov, coupled decay per group, BN shifts
at 64x lr), triangular schedule, label smoothing 0.2, random mirror + 2-px reflect shifts,
lookahead every 5 steps, with the data on the device; it reports training images/second (and
test accuracy without TTA after each epoch). On a CPU both run in float32; on a GPU jaxcnn
computes in bf16 and PyTorch under bf16 autocast. Data: the CIFAR-10 JPEG copy in $JAXCNN_DATA_DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def _data(limit=None):
    from jaxcnn.data import load_dataset

    ds = load_dataset("cifar10")
    if limit:  # spread over the classes: the JPEG copy's splits are stored class by class
        ds = ds.take(limit, limit // 2)
    return ds.x_train, ds.y_train.astype(np.int32), ds.x_test, ds.y_test.astype(np.int32)


def _recipe(epochs=None, smoke=False):
    from jaxcnn.speedrun import CIFAR10_FAST

    r = CIFAR10_FAST
    if smoke:
        r = dataclasses.replace(r, batch_size=32, epochs=1, eval_batch=64)
    return dataclasses.replace(r, epochs=epochs) if epochs else r


def run_jax(seed=0, limit=None, smoke=False, epochs=None, verbose=0):
    import jax

    from jaxcnn import speedrun
    from jaxcnn.models import get_model

    x, y, xt, yt = _data(limit)
    recipe = _recipe(epochs, smoke)
    model = get_model("airbench", **({"widths": (16, 32, 32)} if smoke else {}))
    _, h = speedrun.train(model, x, y, xt, yt, recipe, seed=seed, verbose=verbose)
    steps = len(x) // recipe.batch_size
    return {"framework": "jaxcnn", "device": str(jax.devices()[0]), "epochs": recipe.epochs,
            "train_seconds_to_target": h["train_seconds_to_target"], "target": recipe.target,
            "test_accuracy_per_epoch": h["val_accuracy"], "test_accuracy_final_tta": h["test_accuracy"],
            "epoch_seconds": [round(s, 2) for s in h["seconds"]], "train_seconds": h["train_seconds"][-1],
            "setup_seconds": round(h["setup_seconds"], 2), "compile_seconds": round(h["compile_seconds"], 2),
            "images_per_second_steady": round(steps * recipe.batch_size / float(np.median(h["seconds"][-2:]))),
            "train_loss": h["loss"], "train_examples": len(x), "test_examples": len(yt)}


def run_torch(seed=0, limit=None, smoke=False, epochs=None, verbose=0):
    """airbench94's recipe in PyTorch (the network as jaxcnn.models.fast.Airbench)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from jaxcnn.models.fast import CIFAR10_MEAN, CIFAR10_STD

    x, y, xt, yt = _data(limit)
    recipe = _recipe(epochs, smoke)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)

    def conv(cin, cout, k=3, padding="same", bias=False):
        c = nn.Conv2d(cin, cout, k, padding=padding, bias=bias)
        w = c.weight.data
        torch.nn.init.dirac_(w[: min(cin, cout)])
        return c

    def norm(w):
        bn = nn.BatchNorm2d(w, eps=1e-12, momentum=0.4)
        bn.weight.requires_grad_(False)
        return bn

    def group(cin, cout):
        return nn.Sequential(conv(cin, cout), nn.MaxPool2d(2), norm(cout), nn.GELU(), conv(cout, cout),
                             norm(cout), nn.GELU())

    whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
    net = nn.Sequential(whiten, nn.GELU(), group(24, 64), group(64, 256), group(256, 256), nn.MaxPool2d(3),
                        nn.Flatten(), nn.Linear(256, 10, bias=False)).to(dev).to(memory_format=torch.channels_last)
    whiten.weight.requires_grad_(False)
    mean = torch.tensor(CIFAR10_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=dev).view(1, 3, 1, 1)
    xd = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
    yd = torch.from_numpy(y.astype(np.int64)).to(dev)

    def prep(u8):
        return ((u8.float() / 255.0) - mean) / std

    with torch.no_grad():  # whitening from the first 5000 training images
        t_setup = time.perf_counter()
        imgs = prep(xd[:5000])
        patches = imgs.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).float()
        flat = patches.view(len(patches), -1)
        ev, vec = torch.linalg.eigh(flat.T @ flat / len(flat))
        ev, vec = ev.flip(0).view(-1, 1, 1, 1), vec.T.reshape(12, 3, 2, 2).flip(0)
        scaled = vec / torch.sqrt(ev + 5e-4)
        whiten.weight.data[:] = torch.cat((scaled, -scaled))
        setup = time.perf_counter() - t_setup
    steps = len(x) // recipe.batch_size
    total = max(1, math.ceil(steps * recipe.epochs))
    lr = recipe.lr
    shifts = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    shift_ids = {id(p) for p in shifts}
    others = [p for p in net.parameters() if p.requires_grad and id(p) not in shift_ids]
    lr_b = lr * recipe.bias_lr_scale
    opt = torch.optim.SGD([dict(params=shifts, lr=lr_b, weight_decay=recipe.decay / lr_b),
                           dict(params=others, lr=lr, weight_decay=recipe.decay / lr)],
                          momentum=recipe.momentum, nesterov=True)
    base_lrs = [lr_b, lr]
    warm = max(1, int(total * recipe.warmup))

    def factor(s):
        if s < warm:
            return recipe.lr_start + (1 - recipe.lr_start) * s / warm
        return 1 + (recipe.lr_end - 1) * (s - warm) / max(1, total - warm)

    lossf = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="sum")
    ema = {k: v.clone() for k, v in net.state_dict().items()}
    bf16 = dev == "cuda"

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    def augment(images):
        flip = torch.rand(len(images), device=dev) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        padded = F.pad(images, (2,) * 4, "reflect")
        off = torch.randint(0, 5, (len(images), 2), device=dev)
        out = torch.empty_like(images)
        for dy in range(5):
            for dx in range(5):
                m = (off[:, 0] == dy) & (off[:, 1] == dx)
                out[m] = padded[m, :, dy:dy + 32, dx:dx + 32]
        return out

    step, trained, secs, accs = 0, setup, [], []
    for epoch in range(math.ceil(total / steps)):
        whiten.bias.requires_grad_(epoch < (recipe.whiten_bias_epochs or 1e9))
        order = torch.randperm(len(x), device=dev)
        net.train()
        sync()
        t0 = time.perf_counter()
        for s in range(min(steps, total - step)):
            rows = order[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * factor(step)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                loss = lossf(net(augment(prep(xd[rows]))) / 9.0, yd[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 5 == 0 or step >= total:
                decay = 0.95 ** 5 * (step / total) ** 3 if step % 5 == 0 else 1.0
                with torch.no_grad():
                    for (k, e), v in zip(ema.items(), net.state_dict().values()):
                        if v.dtype.is_floating_point:
                            e.lerp_(v, 1 - decay)
                            v.copy_(e)
        sync()
        dt = time.perf_counter() - t0
        secs.append(dt)
        trained += dt
        net.eval()
        with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            correct = sum(int((net(prep(torch.from_numpy(xt[i:i + 500].transpose(0, 3, 1, 2).copy()).to(dev)))
                               .argmax(1).cpu() == torch.from_numpy(yt[i:i + 500].astype(np.int64))).sum())
                          for i in range(0, len(xt), 500))
        accs.append(correct / len(yt))
        if verbose:
            print(f"pytorch epoch {epoch + 1}: {dt:.1f}s, test accuracy {accs[-1]:.4f}", file=sys.stderr, flush=True)
    return {"framework": "pytorch", "torch": torch.__version__, "device": dev, "epochs": recipe.epochs,
            "epoch_seconds": [round(s, 2) for s in secs], "train_seconds": trained,
            "images_per_second_steady": round(steps * recipe.batch_size / float(np.median(secs[-2:]))),
            "test_accuracy_per_epoch": accs, "train_seconds_to_target": next(
                (None if a < recipe.target else sum(secs[:i + 1]) + setup for i, a in enumerate(accs) if
                 a >= recipe.target), None), "target": recipe.target, "train_examples": len(x)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=("jaxcnn", "pytorch"), default="jaxcnn")
    p.add_argument("--epochs", type=float, help="default: the recipe's 9.9")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int)
    p.add_argument("--json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    run = {"jaxcnn": run_jax, "pytorch": run_torch}[args.framework]
    r = run(seed=args.seed, limit=args.limit, epochs=args.epochs, verbose=1)
    r["wall_seconds_in_process"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return r


if __name__ == "__main__":
    main()
