"""The `jaxcnn` command: list, train and launch experiments; preview augmentation; convert weights.

Experiments are found by name in the checkout's `experiments/` folder (the current directory's,
or the one beside the installed package in an editable install) or by a file path, so an
installed jaxcnn never ships a package called `experiments`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment_dirs() -> list[str]:
    dirs = []
    for root in (os.getcwd(), _PACKAGE_PARENT):
        d = os.path.join(root, "experiments")
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return dirs


def list_experiments() -> dict[str, str]:
    """Experiment name -> file path."""
    found = {}
    for d in experiment_dirs():
        for f in sorted(os.listdir(d)):
            if f.endswith(".py") and not f.startswith("_"):
                found.setdefault(f[:-3], os.path.join(d, f))
    return found


def load_experiment(name_or_path: str):
    """The module of an experiment, by name (see `jaxcnn list`) or by .py path."""
    path = name_or_path if name_or_path.endswith(".py") else list_experiments().get(name_or_path)
    if path is None or not os.path.exists(path):
        known = ", ".join(list_experiments()) or "none found (run from the checkout, or pass a path)"
        raise SystemExit(f"jaxcnn: unknown experiment {name_or_path!r}; known: {known}")
    spec = importlib.util.spec_from_file_location(f"_jaxcnn_experiment_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cmd_list(args) -> int:
    for name, path in list_experiments().items():
        config = load_experiment(path).get_config()
        print(f"{name:24s} {config.description}")
    return 0


def _cmd_train(args) -> int:
    from jaxcnn import experiment
    from jaxcnn.parallel import setup

    setup(fake_devices=args.fake_devices)  # fake devices, multi-host start-up (before JAX starts)
    module = load_experiment(args.experiment)
    config = experiment.apply_flags(module.get_config(), args)
    workdir = args.workdir or os.path.join("runs", config.name)
    from jaxcnn.checkpoint import Preempted

    try:
        experiment.train_and_evaluate(config, workdir, verbose=0 if args.quiet else 1)
    except Preempted as e:  # SIGTERM: the checkpoint is written, the message is on stderr
        return e.exit_code
    return 0


def _cmd_launch(args) -> int:
    from jaxcnn.launch import launch

    command = args.command_args[1:] if args.command_args[:1] == ["--"] else args.command_args
    return launch(command, args.processes, args.devices_per_process, port=args.port, timeout=args.timeout)


def _add_launch(sub) -> None:
    p = sub.add_parser("launch", help="run N local processes as one multi-host job (cluster rehearsal)",
                       description="Run a jaxcnn subcommand (or a .py script) in N local CPU processes "
                                   "joined by jax.distributed, e.g. "
                                   "`jaxcnn launch --processes 2 -- train mnist_cnn --epochs 1`.")
    p.add_argument("--processes", type=int, required=True, help="number of processes (hosts)")
    p.add_argument("--devices-per-process", type=int, default=1, help="fake CPU devices per process")
    p.add_argument("--port", type=int, help="coordinator port on localhost (default: a free one)")
    p.add_argument("--timeout", type=float, help="stop all processes after this many seconds")
    p.add_argument("command_args", nargs=argparse.REMAINDER, help="-- SUBCOMMAND ARGS... or -- script.py ARGS...")
    p.set_defaults(fn=_cmd_launch)


def _cmd_augment_preview(args) -> int:
    from jaxcnn.data import load_dataset
    from jaxcnn.data.augment import save_augment_preview

    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    images = ds.x_train[: args.count]
    if args.resize:
        from jaxcnn.data.image_folder import resize_images

        images = resize_images(images, args.resize)
    titles = [ds.class_names[int(i)] for i in ds.y_train[: args.count]]
    print(save_augment_preview(images, args.augment, args.out, titles=titles, seed=args.seed))
    return 0


def _add_tools(sub) -> None:
    p = sub.add_parser("augment-preview", help="a PNG grid of augmented training images",
                       description="Each row: a training image, then augmented copies (seeded).")
    p.add_argument("dataset", help="dataset name, e.g. mnist or cifar10")
    p.add_argument("--augment", default="A", help="recipe (A, B) or key=value,... parameters")
    p.add_argument("--out", default="augment_preview.png", help="output PNG path")
    p.add_argument("--count", type=int, default=5, help="how many images (rows)")
    p.add_argument("--resize", type=int, help="resize images to this square size first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    p.set_defaults(fn=_cmd_augment_preview)
    # Listed here for --help; main() hands its arguments to the converter's own parser.
    sub.add_parser("convert-weights", add_help=False,
                   help="Keras HDF5 weights (VGG16, ResNet50) -> an Orbax checkpoint of Flax params")


def build_parser() -> argparse.ArgumentParser:
    from jaxcnn import experiment

    parser = argparse.ArgumentParser(prog="jaxcnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="name the experiments")
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser("train", help="train and evaluate an experiment")
    p.add_argument("experiment", help="experiment name (see `jaxcnn list`) or path to its .py file")
    experiment.add_flags(p)
    p.set_defaults(fn=_cmd_train)
    _add_launch(sub)
    _add_tools(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert-weights"]:
        from jaxcnn.weights.keras_h5 import main_convert

        return main_convert(argv[1:])
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
