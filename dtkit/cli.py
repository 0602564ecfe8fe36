"""The ``dtkit`` command: a thin layer over the Python API.

User errors (:class:`~dtkit.errors.DtkitError`) print one line and exit 2; a
reader that closes the output early (``dtkit datasets info NAME | head``) ends
the command quietly, as it would any Unix tool. Nothing else is caught, so bugs
keep their tracebacks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dtkit``; ``argv`` lets tests run it in-process."""
    try:
        try:
            return _run(argv)
        finally:  # buffered output (`--help` too) that meets a closed pipe fails here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`| head`). Python would flush stdout again at exit and print a second
        # error, so point it at /dev/null; 141 = 128 + SIGPIPE, what a C tool killed by it returns.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(argv: Sequence[str] | None) -> int:
    import tyro

    from dtkit.api import DemoConfig, EvalConfig, run_demo, run_eval
    from dtkit.collect.catalog import DatasetsConfig, collect_argv, run_datasets
    from dtkit.errors import DtkitError
    from dtkit.trainer import TrainConfig, train

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["collect"]:  # deprecated alias of `dtkit datasets build`, kept for one release
        try:
            args = collect_argv(args[1:])
        except DtkitError as exc:
            print(f"dtkit: error: {exc}", file=sys.stderr)
            return 2
        print("dtkit: `dtkit collect` is deprecated and will be removed; use `dtkit datasets build`", file=sys.stderr)
    cfg = tyro.extras.subcommand_cli_from_dict(
        {"datasets": DatasetsConfig, "train": TrainConfig, "eval": EvalConfig, "demo": DemoConfig},
        prog="dtkit",
        description="dtkit: decision transformers trained on local Minari datasets. "
                    "`dtkit collect` is a deprecated alias of `dtkit datasets build`.",
        args=args,
    )
    try:
        if isinstance(cfg, DatasetsConfig):
            print(run_datasets(cfg))
        elif isinstance(cfg, TrainConfig):
            result = train(cfg)
            if result.checkpoint is not None:  # rank 0 only, under torchrun
                print(f"run folder: {result.run_dir}\ncheckpoint: {result.checkpoint}")
            if result.report is not None:
                print(result.report.summary())
        elif isinstance(cfg, EvalConfig):
            print(run_eval(cfg).summary())
        elif isinstance(cfg, DemoConfig):
            run_demo(cfg)
    except DtkitError as exc:
        print(f"dtkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dtkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
