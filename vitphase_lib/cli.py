"""The ``vitphase`` command: ``zoo train``, ``zoo ship``, ``zoo verify``, ``book``, ``bench``."""
from __future__ import annotations

import argparse
import sys


def _zoo_train(args: argparse.Namespace) -> int:
    from .data import load_fashion_mnist
    from .models import ALL_MINI_CONFIGS
    from .train import Trainer
    from .zoo import ZOO_TRAINING, training_dir

    names = args.model or ["mini-s", "mini-b", "mini-l"]
    unknown = [n for n in names if n not in ALL_MINI_CONFIGS]
    if unknown:
        print(f"unknown zoo model(s) {unknown}; choose from {sorted(ALL_MINI_CONFIGS)}", file=sys.stderr)
        return 2
    train_set, test_set = load_fashion_mnist("train"), load_fashion_mnist("test")
    for name in names:
        trainer = Trainer(ALL_MINI_CONFIGS[name], ZOO_TRAINING[name], train_set, test_set,
                          training_dir(name), progress=not args.quiet)
        state = trainer.run()
        last = state.log[-1] if state.log else {}
        print(f"{name}: {state.step} steps, test top-1 {last.get('test_top1', float('nan')):.2f}%, "
              f"{state.train_seconds / 60:.1f} min of training -> {trainer.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vitphase", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    zoo = commands.add_parser("zoo", help="train, ship and verify the mini zoo")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)
    train = zoo_commands.add_parser("train", help="train (or resume) zoo models")
    train.add_argument("--model", nargs="+", help="mini-s, mini-b, mini-l (default: all three)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_zoo_train)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
