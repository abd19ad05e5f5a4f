"""The ``vitphase`` command.

  vitphase zoo train [--model mini-b ...]   train (or resume) zoo models
  vitphase zoo ensure                       train the default zoo models that are not shipped
  vitphase zoo ship --model ...             copy finished runs into zoo/ (tiny-*: zoo/tiny/)
  vitphase zoo verify                       check the shipped checkpoints' sha256
  vitphase analyse [--profile P] [--set K=V] compute and cache every model's analyses
                                            (data-parallel under torchrun)
  vitphase book [--profile P] [--only 02]   execute the chapters with papermill, build the book
  vitphase notebooks                        write the .ipynb paired with each jupytext source
  vitphase bench [--quick]                  capture overhead and memory benchmark (JSON result)
  vitphase estimate [--profile paper]       estimated GPU run time (FLOP counts + measurements)

A mistake the user can fix (an unknown model, a missing file, a wrong parameter) is reported as
one message on stderr with exit status 2; `vitphase --debug ...` shows the traceback instead.
SIGTERM stops a command as Ctrl-C does, removing its temporary files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_ZOO = ["mini-s", "mini-b", "mini-l"]


def _zoo_train(args: argparse.Namespace) -> int:
    from .data import load_fashion_mnist
    from .models import ALL_MINI_CONFIGS, VARIANT_GROUPS, VARIANTS
    from .train import Trainer
    from .zoo import ZOO_TRAINING, monitor_spec, training_dir

    names = list(args.model or [])
    for group in getattr(args, "group", None) or []:
        if group not in VARIANT_GROUPS:
            print(f"unknown variant group {group!r}; choose from {list(VARIANT_GROUPS)}", file=sys.stderr)
            return 2
        names += [n for n, v in VARIANTS.items() if v.group == group and n.startswith(args.scale)]
    names = list(dict.fromkeys(names or DEFAULT_ZOO))
    unknown = [n for n in names if n not in ALL_MINI_CONFIGS]
    if unknown:
        print(f"unknown zoo model(s) {unknown}; choose from {sorted(ALL_MINI_CONFIGS)}", file=sys.stderr)
        return 2
    train_set, test_set = load_fashion_mnist("train"), load_fashion_mnist("test")
    for name in names:
        trainer = Trainer(ALL_MINI_CONFIGS[name], ZOO_TRAINING[name], train_set, test_set,
                          training_dir(name), progress=not args.quiet, monitor=monitor_spec(name))
        state = trainer.run()
        last = state.snapshots[-1] if state.snapshots else {}  # the stored (float16) weights, as shipped
        print(f"{name}: {state.step} steps, test top-1 {last.get('test_top1', float('nan')):.2f}%, "
              f"{state.train_seconds / 60:.1f} min of training -> {trainer.run_dir}")
    return 0


def _zoo_ensure(args: argparse.Namespace) -> int:
    from .zoo import shipped_manifest
    shipped = shipped_manifest()["models"]
    missing = [name for name in DEFAULT_ZOO if name not in shipped]
    if not missing:
        return 0
    print(f"zoo: {missing} not shipped in zoo/; training them (resumable, see README 'Mini zoo')")
    return _zoo_train(argparse.Namespace(model=missing, quiet=args.quiet, group=None, scale="mini"))


def _zoo_ship(args: argparse.Namespace) -> int:
    from .zoo import ship
    manifest = ship(args.model)
    for name in args.model:
        entry = manifest["models"][name]
        print(f"{name}: shipped {len(entry['snapshots'])} checkpoints, test top-1 {entry['test_top1']:.2f}%")
    return 0


def _zoo_verify(args: argparse.Namespace) -> int:
    from .zoo import verify
    problems = verify()
    for problem in problems:
        print(problem, file=sys.stderr)
    print("zoo: all shipped checkpoints verified" if not problems else f"zoo: {len(problems)} problem(s)")
    return 1 if problems else 0


def parse_settings(settings: list[str] | None) -> dict:
    """``--set key=value`` pairs; each value is read as YAML (numbers, lists, null, ...).

    Args:
        settings: the ``--set`` arguments, ``None`` for none.
    """
    import yaml

    from .errors import ParameterError
    parsed = {}
    for setting in settings or []:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--set expects KEY=VALUE (e.g. --set dataset=/data/imagenet/val), "
                                 f"got {setting!r}")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ParameterError(f"--set {setting!r}: the value is not valid YAML ({error})") from error
    return parsed


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def precompute(study, report=print) -> None:
    """Every table the chapters read, computed once (or found in the cache): each model's
    analysis and PE scaling, the zoo models' test top-1 (T1, T1b; checked against their training
    record) and, when the study names variants, the variant study's analyses and retention tables
    ("Beyond the paper")."""
    for name in study.models:
        summary = study.analysis(name)["summary"]
        study.pe_scaling(name)
        report(f"{name}: analysed {int(summary.images.iloc[0])} images (top-1 {float(summary.top1.iloc[0]):.2f}%)")
    study.model_inventory()
    if study.variants:
        from .claims.beyond import Context, noise
        context = Context(study)
        for name in context.vstudy.models:
            context.vstudy.analysis(name)
        for name in noise.noise_models(context):
            context.vstudy.retention(name)
        study.variant_inventory()
        report(f"the variant study: analysed {len(context.vstudy.models)} models "
               f"({context.vstudy.n_images} images each)")


def _analyse(args: argparse.Namespace) -> int:
    """Every cached analysis of a profile, so the chapters only load tables. Under ``torchrun``
    the ranks share the images and rank 0 writes the cache."""
    import torch.distributed as dist

    from .distributed import init_from_environment
    from .study import Study
    study = Study.from_profile(args.profile, **parse_settings(args.set))
    current = init_from_environment(study.device)
    try:
        study.check()  # every model, checkpoint and data path, before the first forward pass
        precompute(study, report=lambda line: print(f"{line} on {current.size} process(es)")
                   if current.is_main else None)
    finally:
        if current.size > 1:
            dist.destroy_process_group()
    return 0


def _book(args: argparse.Namespace) -> int:
    from .pipeline import CHAPTERS_DIR, build_book, cpu_cores
    from .study import Study
    overrides = parse_settings(args.set)
    jobs = args.jobs or min(4, cpu_cores())
    study = Study.from_profile(args.profile, **overrides)
    # the chapters' parameters, checked here once rather than failing inside the first chapter
    study.check()
    if jobs > 1 and not args.only:
        # the heavy work once, on every core; the chapters then mostly read tables, several at a time
        precompute(study)
    index = build_book(args.profile, only=args.only, html=not args.no_html,
                       output_dir=Path(args.output) if args.output else CHAPTERS_DIR,
                       overrides=overrides, jobs=jobs)
    print(f"book: {index}" if not args.no_html else "chapters executed")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from .pipeline import generate_ipynb, notebook_sources
    for source in notebook_sources():
        print(generate_ipynb(source))
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from .estimate import main as estimate_main
    return estimate_main(args)


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main
    return bench_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vitphase", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of a one-line message")
    commands = parser.add_subparsers(dest="command", required=True)

    zoo = commands.add_parser("zoo", help="train, ship and verify the mini zoo")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)
    train = zoo_commands.add_parser("train", help="train (or resume) zoo models")
    train.add_argument("--model", nargs="+", help="zoo or variant models, e.g. mini-b mini-s-d24 "
                       "(default, without --group: mini-s, mini-b, mini-l)")
    train.add_argument("--group", nargs="+", help="every variant of these groups: depth, pooling, "
                       "pe, hub, seed, mlp")
    train.add_argument("--scale", default="mini", choices=["mini", "tiny"],
                       help="with --group: the variant zoo (mini) or its tiny twin (tiny)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_zoo_train)
    ensure = zoo_commands.add_parser("ensure", help="train the default zoo models not shipped")
    ensure.add_argument("--quiet", action="store_true")
    ensure.set_defaults(func=_zoo_ensure)
    ship = zoo_commands.add_parser("ship", help="copy finished runs into zoo/ (tiny-*: zoo/tiny/)")
    ship.add_argument("--model", nargs="+", required=True)
    ship.set_defaults(func=_zoo_ship)
    zoo_commands.add_parser("verify", help="check the shipped checkpoints").set_defaults(func=_zoo_verify)

    book = commands.add_parser("book", help="execute the chapters and build the book")
    book.add_argument("--profile", default="default", help="smoke, default or paper")
    book.add_argument("--only", nargs="+", help="chapters whose file name contains these")
    book.add_argument("--no-html", action="store_true", help="execute the notebooks only")
    book.add_argument("--output", help="folder for the executed notebooks (default book/chapters)")
    book.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a profile parameter in every chapter, e.g. --set dataset=/data/val")
    book.add_argument("--jobs", type=_positive_int,
                      help="chapters executed at once, the cores shared among them (default: the "
                      "cores, at most 4); the tables they read are computed first, on every core")
    book.set_defaults(func=_book)

    analyse = commands.add_parser("analyse", help="compute and cache every model's analyses "
                                  "(torchrun: data-parallel)")
    analyse.add_argument("--profile", default="default", help="smoke, default or paper")
    analyse.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a profile parameter, e.g. --set dataset=/data/val")
    analyse.set_defaults(func=_analyse)

    commands.add_parser("notebooks", help="write the paired .ipynb files").set_defaults(func=_notebooks)

    bench = commands.add_parser("bench", help="capture overhead and memory benchmark")
    bench.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    bench.add_argument("--results", default="benchmarks/results",
                       help="folder of the JSON results (default: benchmarks/results)")
    bench.add_argument("--render", action="store_true", help="only refill the README's and the "
                       "book's benchmark tables from the latest result")
    bench.set_defaults(func=_bench)

    estimate = commands.add_parser("estimate", help="estimated GPU run time of a profile, from "
                                   "FLOP counts and measurements on this machine")
    estimate.add_argument("--profile", default="paper")
    estimate.add_argument("--host-cores", type=int, default=8, help="host cores fitting the probes")
    estimate.set_defaults(func=_estimate)

    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command. The project's user errors become one message on stderr and exit
    status 2 (``--debug``: raised, with the traceback); SIGTERM cleans up as Ctrl-C does.

    Args:
        args: parsed arguments, with ``func`` (the sub-command) and ``debug``.
    """
    from .errors import user_errors
    from .results import sigterm_cleanup
    try:
        with sigterm_cleanup():
            return args.func(args)
    except user_errors() as error:
        if args.debug:
            raise
        print(f"vitphase: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
