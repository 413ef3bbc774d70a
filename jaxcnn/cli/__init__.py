"""The `jaxcnn` command: list, train and launch experiments; predict, export and evaluate runs; tools.

One parser owns every subcommand (`jaxcnn.cli.train`, `.serve`, `.tools` each add theirs).
Every subcommand runs under `jaxcnn.errors.guard`: an error prints one line
(`jaxcnn: error: <file>: <problem>`) and a hint, and exits 2 for bad input, 1 for a failure;
`--debug` anywhere before a `--` (or JAXCNN_DEBUG=1) shows the traceback instead.

Run as a command (`jaxcnn ...`, `python -m jaxcnn.cli ...`) it prints its own results and errors
only: the start-up noise of TensorFlow, absl, CUDA probing and gloo is filtered out
(`jaxcnn.quiet`); `--verbose` (or JAXCNN_VERBOSE=1) or `--debug` shows everything.
"""

from __future__ import annotations

import argparse
import sys

from jaxcnn import errors, quiet
from jaxcnn.cli import serve, tools, train
from jaxcnn.cli.train import experiment_dirs, list_experiments, load_experiment
from jaxcnn.config.checks import checkpoint_choice, port_number, positive_float

__all__ = ["build_parser", "checkpoint_choice", "experiment_dirs", "list_experiments", "load_experiment",
           "main", "port_number", "positive_float"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: JAXCNN_DEBUG=1)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show the libraries' start-up messages (TensorFlow, absl, CUDA, gloo); "
                             "also: JAXCNN_VERBOSE=1")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parsers(sub)
    tools.add_parsers(sub)
    serve.add_parsers(sub)
    return parser


def main(argv=None) -> int:
    """Run one subcommand; errors become one line and an exit status (see the module docstring).

    `argv` None means the real command line: then the libraries' start-up noise is filtered
    unless --verbose or --debug asks for everything.
    """
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    debug, verbose = errors.debug_requested(argv), quiet.verbose_requested(argv)
    if command_line and not verbose:
        quiet.install()

    def run():
        args = build_parser().parse_args(quiet.strip_verbose(errors.strip_debug(argv)))
        args.verbose = verbose  # `launch` passes it on to its processes
        return args.fn(args)

    result, code = errors.guard(run, debug=debug)
    return code or (result or 0)
