"""The ``harness`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import models


def _pair_from_args(args: argparse.Namespace) -> models.ModelSpec:
    if getattr(args, "base", None) or getattr(args, "sft", None):
        if not (args.base and args.sft):
            raise SystemExit("error: --base and --sft go together")
        return models.custom_pair(args.base, args.sft, dtype=args.dtype or "bfloat16")
    return models.get_spec(args.pair)


def _add_pair_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pair", default=models.DEFAULT_PAIR,
                        help=f"registered pair (default {models.DEFAULT_PAIR}); see `harness list`")
    parser.add_argument("--base", help="base checkpoint: hub id or local directory (with --sft)")
    parser.add_argument("--sft", help="SFT checkpoint: hub id or local directory (with --base)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto")


def command_list(args: argparse.Namespace) -> int:
    for spec in models.REGISTRY.values():
        reason = models.unavailable_reason(spec)
        state = "available" if reason is None else "unavailable"
        source = "built offline" if spec.is_built_locally else f"{spec.base.location} / {spec.sft.location}"
        print(f"{spec.name:<14} {spec.family:<8} {state:<12} {source}")
    return 0


def pair_summary(resolved: models.ResolvedPair) -> str:
    """A one-screen description of a resolved pair."""
    base_config = models.load_config(resolved.base)
    lines = [
        f"pair        {resolved.spec.name} ({resolved.spec.family})",
        f"base        {resolved.base.describe()}",
        f"sft         {resolved.sft.describe()}",
        f"layers      {base_config.num_hidden_layers} decoder layers, hidden size {base_config.hidden_size}, "
        f"vocabulary {base_config.vocab_size}",
    ]
    info = resolved.build_info
    if info:
        score = info["exact_match"]
        lines += [
            f"parameters  {info['parameters']:,}",
            f"build       {info['build_seconds']} s (pretraining {info['pretrain_seconds']} s, "
            f"SFT {info['sft_seconds']} s); final losses {info['pretrain_final_loss']} / {info['sft_final_loss']}",
            f"exact match {score['task']}, {score['examples']} held-out problems: "
            f"base {score['base']:.3f}, SFT {score['sft']:.3f}",
            f"weights     base {info['weights_sha256']['base'][:16]}, sft {info['weights_sha256']['sft'][:16]}",
        ]
    return "\n".join(lines)


def command_build(args: argparse.Namespace) -> int:
    resolved = models.resolve_pair(_pair_from_args(args))
    print(pair_summary(resolved))
    return 0


def command_run(args: argparse.Namespace) -> int:
    """The main job on one pair: resolve (building a tiny pair if needed) and summarise it."""
    return command_build(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered pairs and whether they can be loaded here").set_defaults(
        handler=command_list)
    for name, handler, text in (("build", command_build, "build (or find cached) a pair and describe it"),
                                ("run", command_run, "the main job on a pair")):
        sub = commands.add_parser(name, help=text)
        _add_pair_options(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (models.ModelUnavailableError, models.PairMismatchError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
