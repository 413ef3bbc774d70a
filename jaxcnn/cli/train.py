"""`jaxcnn list`, `jaxcnn train` and `jaxcnn launch`: experiments found by name or path, and local
multi-process jobs.

Experiments are found by name in the checkout's `experiments/` folder (the current directory's,
or the one beside the installed package in an editable install) or by a file path, so an
installed jaxcnn never ships a package called `experiments`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from jaxcnn import errors, experiment
from jaxcnn.config import add_flags
from jaxcnn.config.checks import port_number, positive_float, positive_int
from jaxcnn.launch import DEFAULT_GRACE, launch

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        raise errors.UsageError(f"unknown experiment {name_or_path!r}; known: {known}")
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
    # The same entry as `python -m experiments.NAME`; Preempted (SIGTERM, checkpoint written)
    # leaves through the guard with its exit status 143.
    experiment.run(load_experiment(args.experiment).get_config(), args)
    return 0


def _cmd_launch(args) -> int:
    command = args.command_args[1:] if args.command_args[:1] == ["--"] else args.command_args
    return launch(command, args.processes, args.devices_per_process, port=args.port, timeout=args.timeout,
                  grace=args.grace, quiet=not getattr(args, "verbose", False))


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="name the experiments")
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser("train", help="train and evaluate an experiment")
    p.add_argument("experiment", help="experiment name (see `jaxcnn list`) or path to its .py file")
    add_flags(p)
    p.set_defaults(fn=_cmd_train)
    p = sub.add_parser("launch", help="run N local processes as one multi-host job (cluster rehearsal)",
                       description="Run a jaxcnn subcommand (or a .py script) in N local CPU processes "
                                   "joined by jax.distributed, e.g. "
                                   "`jaxcnn launch --processes 2 -- train mnist_cnn --epochs 1`.")
    p.add_argument("--processes", type=positive_int, required=True, help="number of processes (hosts)")
    p.add_argument("--devices-per-process", type=positive_int, default=1, help="fake CPU devices per process")
    p.add_argument("--port", type=port_number, help="coordinator port on localhost (default: a free one)")
    p.add_argument("--timeout", type=positive_float, help="stop all processes after this many seconds")
    p.add_argument("--grace", type=positive_float, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="on SIGTERM/Ctrl-C, wait this long for the processes to save and exit before "
                        f"killing them (default {DEFAULT_GRACE:g})")
    p.add_argument("command_args", nargs=argparse.REMAINDER, help="-- SUBCOMMAND ARGS... or -- script.py ARGS...")
    p.set_defaults(fn=_cmd_launch)
