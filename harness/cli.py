"""The ``harness`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from harness.errors import BadInputError
from harness.sources import layouts, models

DEFAULT_PROBE_SET = "gsm8k-local"  # the probe set of a report that does not name one


def _pair_from_args(args: argparse.Namespace) -> models.ModelSpec:
    named = models.pair_locations(getattr(args, "base", None), getattr(args, "sft", None))
    if named is not None:
        if args.pair:  # two pairs named: which one was meant is the user's to say
            raise SystemExit(f"error: --pair {args.pair} and --base/--sft name two pairs: give one")
        return models.custom_pair(*named, dtype=args.dtype or "bfloat16")
    return models.get_spec(args.pair or models.DEFAULT_PAIR)


def _check_output_file(path: str | None) -> None:
    """Refuse an output path that cannot be written, before any work: not at the end of a long run."""
    from pathlib import Path

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise BadInputError(f"--out {path} is a directory: name the file to write")
    parent = next((p for p in (target.parent, *target.parent.parents) if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise BadInputError(f"--out {path}: {parent} cannot be written")


def claims_config_of(args: argparse.Namespace) -> dict:
    """The claims config of a run (``harness.options``: the same table and merge as the pytest plugin's)."""
    from harness import options

    return options.claims_config_of(vars(args))


def _add_settings_options(parser: argparse.ArgumentParser, evaluation: bool = False) -> None:
    from harness import options

    options.add_options(parser.add_argument, options.SHARED_OPTIONS if evaluation else options.SETTINGS_OPTIONS)


def _add_pair_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pair",
        default=None,
        help=f"registered pair (default {models.DEFAULT_PAIR}); see `harness list`",
    )
    parser.add_argument("--base", help="base checkpoint: hub id or local directory (with --sft)")
    parser.add_argument(
        "--sft", help="SFT checkpoint: hub id or local directory (with --base; alone when it is a PEFT adapter)"
    )
    parser.add_argument("--dtype", default=None, help=f"{', '.join(models.DTYPES)} or auto")


def command_list(args: argparse.Namespace) -> int:
    print(f"{'pair':<14} {'family':<8} {'size':>6}  {'here':<12} base / SFT")
    for spec in models.REGISTRY.values():
        reason = models.unavailable_reason(spec)
        state = "available" if reason is None else "unavailable"
        source = "built offline" if spec.is_built_locally else f"{spec.base.location} / {spec.sft.location}"
        print(f"{spec.name:<14} {spec.family:<8} {spec.published_parameters or 'tiny':>6}  {state:<12} {source}")
    print(
        "\nfamilies the harness knows the layout of (any pair of them runs with --base and --sft; the SFT may be "
        "a PEFT adapter):"
    )
    print(layouts.family_table())
    return 0


def pair_summary(resolved: models.ResolvedPair) -> str:
    """A one-screen description of a resolved pair."""
    base_config = layouts.text_config(models.load_config(resolved.base))
    lines = [
        f"pair        {resolved.spec.name} ({resolved.spec.family})",
        f"base        {resolved.base.describe()}",
        f"sft         {resolved.sft.describe()}",
        f"layers      {base_config.num_hidden_layers} decoder layers, hidden size {base_config.hidden_size}, "
        f"vocabulary {base_config.vocab_size}",
    ]
    info = resolved.build_info
    if info and "exact_match" not in info:  # a planted control: weights edited from a tiny pair, not trained
        expected = info.get("expected") or {}
        lines.append(f"planted     {info['description']} (edited from the tiny pair's build {info['source']})")
        if expected:
            lines.append("expected    " + ", ".join(f"{k} {'holds' if v else 'refuted'}" for k, v in expected.items()))
    elif info:
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


def profile_options(args: argparse.Namespace, spec: models.ModelSpec):
    from harness.measure.profile import ProfileOptions
    from harness.plants.catalogue import control_pooled_samples
    from harness.sources.data import token_samples_of

    pooled_samples = control_pooled_samples(spec.name, args.pooled_samples)
    return ProfileOptions(
        probe_set=args.probe_set,
        pooled_samples=pooled_samples,
        token_samples=token_samples_of(pooled_samples, args.token_samples),
        max_tokens=args.max_tokens,
        alpha=args.alpha,
        cka_center=not args.uncentered_cka,
        last_layer=args.last_layer,
        seed=args.seed,
        dtype=args.dtype or spec.dtype,
        batch_size=args.batch_size,
    )


def command_profile(args: argparse.Namespace) -> int:
    from harness.measure import profile
    from harness.output import reports

    _check_output_file(args.out)
    spec = _pair_from_args(args)
    options = profile_options(args, spec)
    resolved = models.resolve_pair(spec)
    result = profile.profile_pair(resolved, options, device=args.device)
    path = reports.write_report(args.out, reports.profile_report(result))
    print(result.pair.round(4).to_string())
    forward = result.meta["forward"]
    print(
        f"\nforward passes: base {forward['base']['samples']} samples, sft {forward['sft']['samples']} samples "
        f"(0 when read from the cache); {result.meta['timings']['total_seconds']} s"
    )
    print(f"report: {path}")
    return 0


def _add_profile_options(parser: argparse.ArgumentParser) -> None:
    from harness import options
    from harness.sources.data import MAX_TOKENS, PROBE_SETS

    parser.add_argument("--probe-set", default=DEFAULT_PROBE_SET, choices=PROBE_SETS, help="probe texts")
    options.add_options(parser.add_argument, options.PROBE_OPTIONS)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="truncate each text to this many tokens")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=1.0, help="matrix-entropy order (1 = von Neumann)")
    parser.add_argument("--uncentered-cka", action="store_true", help="drop the centring of eq. 6")
    parser.add_argument(
        "--last-layer",
        default="pre_norm",
        choices=("pre_norm", "final_norm"),
        help="take layer L before the final norm (default) or after it",
    )
    parser.add_argument("--seed", type=options.seed_number("--seed"), default=0, help="probe sampling seed")
    parser.add_argument("--device", default="auto", help="auto (GPU with device_map=auto when present), cpu, cuda")


def command_diff(args: argparse.Namespace) -> int:
    """Compare two reports of any kind pair by pair, or one report with the stored baselines of its pairs;
    exit 1 on any drift. Reports of one kind (a baseline counts as a claims report) are compared whole: a
    metric, a verdict, a part or a layer that differs, is missing or was added is drift. Reports of different
    kinds (a profile or a LoRA study against a run or a baseline) are compared on what both hold, and what only
    one holds is listed as not compared."""
    from pathlib import Path

    from harness.output import reports
    from harness.verdicts import regression

    current_report = reports.load_report(args.current or args.baseline)
    new = regression.sections_of(current_report, args.pair, source=str(args.current or args.baseline))
    if args.current:
        old_report = reports.load_report(args.baseline)
        old = regression.sections_of(old_report, args.pair, source=str(args.baseline))
        notes = regression.environment_notes(old_report, current_report)
        old_kind = old_report.get("kind")
    else:  # one report: each of its pairs against its stored baseline
        old = {name: _stored_baseline(Path(args.baselines_dir), name, section) for name, section in new.items()}
        notes = sorted({note for name in new for note in regression.environment_notes(old[name], current_report)})
        old_kind = "baseline"
    whole = regression.same_kind(old_kind, current_report.get("kind"))
    drift = False
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            drift = True
            print(f"{name}: only in the {'second' if name in new else 'first'} report")
            continue
        not_compared: list[str] = []
        if whole:
            differences = regression.compare_sections(old[name], new[name], whole=True)
        else:
            try:
                differences, not_compared = regression.compare_held(old[name], new[name])
            except reports.ReportError as error:
                raise reports.ReportError(
                    f"{name}: a {old_kind} report and a {current_report.get('kind')} report: {error}"
                ) from None
        print(f"{name}: {'no drift' if not differences else f'{len(differences)} differences'}")
        if not_compared:
            print(
                f"  compared on what both hold (a {old_kind} report against a {current_report.get('kind')} "
                "report); not compared:\n    " + "\n    ".join(not_compared)
            )
        if differences:
            drift = True
            print(regression.format_differences(differences, limit=args.limit))
    if notes:
        print("environment (not drift):\n  " + "\n  ".join(notes))
    return 1 if drift else 0


def _stored_baseline(directory, name: str, section: dict) -> dict:
    """The stored baseline a report's section of pair ``name`` compares with: its own build's, for a pair the
    harness builds here (another build's numbers are another model's)."""
    from harness.output import reports
    from harness.verdicts import regression

    probe_set = section.get("probe", {}).get("name", DEFAULT_PROBE_SET)
    spec = models.REGISTRY.get(name)
    weights = section.get("pair", {})
    built_here = spec is not None and spec.is_built_locally
    if built_here and not {"base_weights", "sft_weights"} <= set(weights):
        stored = regression.stored_builds(directory, name, probe_set)
        raise reports.ReportError(
            f"this report's section of {name} does not record which build of the pair it measured (a LoRA "
            "study, or a run that measured only the swaps, names no weights), and each build of a pair built "
            f"here has its own baseline (stored builds: {', '.join(stored) or 'none'}): compare it with one of them, "
            f"`harness diff {regression.baseline_path(directory, name, probe_set, '<build>')} REPORT`"
        )
    build = regression.build_of(weights) if built_here else None
    note = regression.missing_build_note(directory, name, probe_set, build)
    if note:
        raise reports.ReportError(note)
    return regression.load_baseline(regression.baseline_path(directory, name, probe_set, build))


def command_rescore(args: argparse.Namespace) -> int:
    """Every verdict of a stored report again, from its own measurements, under its thresholds or those of a
    claims config; no model is loaded."""
    from pathlib import Path

    from harness import rescore, verification
    from harness.output import reports

    _check_output_file(args.out)
    path = reports.report_file(Path(args.report))
    report = reports.load_report(path)
    # the report's own thresholds, unless a claims config or a setting is given
    claims_config = claims_config_of(args) if (args.claims_config or args.settings) else None
    rescored = rescore.rescore_report(report, claims_config, source=str(path))
    changed = 0
    for name, result in rescored.items():
        under = ", ".join([*([args.claims_config] if args.claims_config else []), *(args.settings or [])])
        print(f"claims on {name}, rescored under {under or 'the thresholds the report was written with'}:")
        print(verification.verdict_table(result.verdicts))
        for key in result.changed:
            print(f"  {key}: {result.stored.get(key, {}).get('outcome')} -> {result.verdicts[key].outcome}")
        changed += len(result.changed)
        print()
    print(f"{changed} verdicts changed outcome")
    if args.out:
        reports.write_report(Path(args.out), rescore.rescored_report(report, rescored, claims_config, str(path)))
        print(f"report: {args.out}")
    return 0


def command_verify(args: argparse.Namespace) -> int:
    """Verify every claim on one pair and write the report, figures and summary."""
    from pathlib import Path

    from harness import verification
    from harness.lora import study as lora_study
    from harness.measure import swap
    from harness.output import plots, reports
    from harness.verdicts import claims

    reports.check_report_dir(args.report_dir)
    spec = _pair_from_args(args)
    claims_config = claims_config_of(args)
    verification.check_downstream_tasks(spec, claims_config)
    measured = verification.measure(spec, profile_options(args, spec), device=args.device, claims_config=claims_config)
    for claim in claims.CLAIMS:
        measured.verdict(claim)
    swaps = verification.measure_swaps(spec, device=args.device, dtype=args.dtype, claims_config=claims_config)
    not_given = []
    for direction in swap.DIRECTIONS:
        for count in swaps.thresholds["C3"]["segment_counts"]:
            try:
                swaps.verdict(direction, count)
            except BadInputError as error:  # too few layers for this M: the other verdicts still stand
                not_given.append(f"C3:{direction}:M{count}: not given ({error})")
    downstream = verification.downstream_scores(
        swaps.resolved, measured.thresholds, args.dtype or spec.dtype, args.device
    )
    studies = {}
    if not args.no_tune:
        study = lora_study.study_pair(spec, measured.profile.pair, measured.thresholds, args.device, args.dtype)
        study.run()
        study.all_verdicts()
        studies[spec.name] = study
    folder = reports.run_folder(Path(args.report_dir), spec.name)
    section, evidence = verification.pair_section(measured, swaps, studies.get(spec.name), downstream)
    report = reports.write_report(
        folder / "report.json", verification.claims_report({spec.name: section}, evidence={spec.name: evidence})
    )
    plots.write_figures(folder, {spec.name: measured}, studies)
    plots.write_swap_figures(folder, {spec.name: swaps})
    reports.point_latest(folder)
    print(
        f"claims of the paper on {spec.name} ({measured.profile.meta['probe']['samples']} probe samples of "
        f"{measured.profile.meta['probe']['name']}, {measured.profile.meta['layers']['count'] - 1} decoder layers):\n"
    )
    print(
        verification.verdict_table(
            {**measured.verdicts, **swaps.verdicts, **(studies[spec.name].verdicts if studies else {})}
        )
    )
    for line in not_given:
        print(line)
    if studies:
        print("\nLoRA arms (mean over seeds):")
        print(studies[spec.name].summary().round(4).to_string())
    print("\ndownstream scores (lm-eval):")
    print(verification.downstream_table(downstream))
    print(f"\nreport  {report}\nfigures {folder}/*.png\nsummary {folder / 'summary.md'}")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    """Score base and SFT with lm-eval on the named tasks (default: the pair's configured evaluation)."""
    from pathlib import Path

    from harness import config
    from harness.measure import evaluate
    from harness.output import reports

    _check_output_file(args.out)
    spec = _pair_from_args(args)
    settings = config.thresholds_for(spec.name, claims_config_of(args))["evaluation"]
    tasks = list(settings["tasks"])  # --tasks, --limit, --num_fewshot, --max_gen_toks are in the settings
    options = evaluate.EvalOptions(
        limit=settings["limit"],
        num_fewshot=settings["num_fewshot"],
        max_gen_toks=settings["max_gen_toks"],
        batch_size=args.batch_size,
        seed=args.seed,
    )
    evaluate.check_tasks(tasks, options)
    resolved = models.resolve_pair(spec)
    table = {}
    for label, ref in (("base", resolved.base), ("sft", resolved.sft)):
        if args.model == "vllm":
            table[label] = evaluate.vllm_scores(
                models.checkpoint_directory(ref), tasks, options, dtype=args.dtype or spec.dtype
            )
            continue
        tokenizer = models.load_tokenizer(ref)
        model = models.load_model(ref, dtype=args.dtype or spec.dtype, device=args.device)
        table[label] = evaluate.lm_eval_scores(model, tokenizer, tasks, options)
        del model
    for task in tasks:
        row = "  ".join(
            f"{label} {table[label][task]['score']:.3f} ± {table[label][task]['stderr'] or 0:.3f}" for label in table
        )
        print(f"{task:<14} {table['base'][task]['metric']:<26} {row}")
    if args.out:
        reports.write_report(
            Path(args.out),
            reports.new_report("evaluate", pair=spec.name, backend=args.model, scores=table),
        )
        print(f"scores: {args.out}")
    return 0


def command_swap(args: argparse.Namespace) -> int:
    """Layer-swap scores in both directions over M equal segments, with the C3 verdicts."""
    from harness import verification
    from harness.measure import swap

    spec = _pair_from_args(args)
    measured = verification.measure_swaps(
        spec, device=args.device, dtype=args.dtype, claims_config=claims_config_of(args)
    )
    measured.thresholds["C3"] = {**measured.thresholds["C3"], "segment_counts": args.segments}
    for direction in swap.DIRECTIONS:
        result = measured.result(direction)
        print(f"\n{direction} (no swap: {result['host']['score']:.4f})")
        for count in args.segments:
            if count not in result["segments"]:
                print(f"  M={count:<3} not given: {result['n_layers']} layers cannot be split into {count} segments")
                continue
            scores = " ".join(f"{row['score']:.3f}" for row in result["segments"][count])
            print(f"  M={count:<3} {scores}")
            measured.verdict(direction, count)
    print()
    print(verification.verdict_table(measured.verdicts))
    return 0


def command_tune(args: argparse.Namespace) -> int:
    """Train budget-matched LoRA arms on a pair's base model and score them (C4, C8, the referee's controls)."""
    from pathlib import Path

    from harness.output import reports

    reports.check_report_dir(args.report_dir)
    if args.pairs:  # several studies in one process: the libraries are imported once
        names = [name.strip() for name in args.pairs.split(",") if name.strip()]
        if not names or args.pair or args.base or args.sft:
            raise SystemExit(
                "error: --pairs takes registered pairs, comma-separated, instead of --pair or --base/--sft"
            )
        for name in names:
            models.get_spec(name)  # an unknown name is refused before any study is trained
        return max(command_tune(argparse.Namespace(**{**vars(args), "pairs": None, "pair": name})) for name in names)

    from harness import config, verification
    from harness.lora import study as lora_study
    from harness.lora import tuning
    from harness.measure.profile import profile_pair
    from harness.output import plots, reports

    spec = _pair_from_args(args)
    thresholds = config.thresholds_for(spec.name, claims_config_of(args))
    overrides = {
        key: value
        for key, value in (
            ("seeds", tuple(args.seeds) if args.seeds else None),
            ("steps", args.steps),
            ("full_rank", args.full_rank),
            ("scaling", args.scaling),
            ("learning_rate", args.learning_rate),
        )
        if value is not None
    }
    masks = [mask.strip() for mask in args.masks.split(",")] if args.masks else None
    for mask in masks or []:
        tuning.parse_mask(mask)  # a malformed mask is refused before anything is loaded
    profile = None
    if not masks:  # the block finder reads the pair profile (cached when the pair was profiled before)
        resolved = models.resolve_pair(spec)
        profile = profile_pair(resolved, profile_options(args, spec), device=args.device).pair
    study = lora_study.study_pair(
        spec,
        profile,
        thresholds,
        args.device,
        args.dtype,
        args.tune_segments,
        masks=masks,
        overrides=overrides,
        jobs_settings=job_settings_of(args),
    )
    if args.share:
        trained = study.run_shared()
        print(
            f"the LoRA study of {spec.name}: {trained} of {len(study.jobs())} runs trained here, the rest read "
            "from the cache or trained by the processes sharing it"
        )
        return 0
    if args.shard:
        index, count = args.shard
        trained = study.run_shard(index, count)
        print(
            f"shard {index}/{count} of the LoRA study of {spec.name}: {trained} of {len(study.jobs())} runs "
            "are in the cache; run without --shard (or the suites) for the verdicts"
        )
        return 0
    study.run()
    study.all_verdicts()
    folder = reports.run_folder(Path(args.report_dir), spec.name)
    section, evidence = verification.pair_section(study=study)
    report = reports.write_report(
        folder / "report.json",
        verification.claims_report({spec.name: section}, kind="lora", evidence={spec.name: evidence}),
    )
    plots.write_figures(folder, {}, {spec.name: study})
    reports.point_latest(folder)
    print(
        f"LoRA arms on {spec.name} (task {study.settings.task}, {study.settings.steps} steps, seeds "
        f"{list(study.settings.seeds)}, mean over seeds):"
    )
    print(study.summary().round(4).to_string())
    if study.verdicts:
        print()
        print(verification.verdict_table(study.verdicts))
    for key, reason in study.skipped.items():
        print(f"{key}: not given ({reason})")
    finder = study.finder_rank()
    if finder:
        print(f"\nblock finder proposed {finder['mask']}: rank {finder['rank']} of {finder['of']} arms")
    print(f"\nreport  {report}\nfigure  {folder / (spec.name + '-lora.png')}\nsummary {folder / 'summary.md'}")
    return 0


def job_settings_of(args: argparse.Namespace):
    """How a study's runs are trained: one after another here, or as submitit jobs (local or Slurm)."""
    from harness.lora import arm_jobs

    slurm = {
        key: value
        for key, value in (("slurm_partition", args.slurm_partition), ("timeout_min", args.slurm_timeout_min))
        if value is not None
    }
    return arm_jobs.JobSettings(executor=args.tune_executor, workers=args.tune_workers, slurm=slurm)


def command_calibrate(args: argparse.Namespace) -> int:
    """How often each claim holds on simulated data with no effect, and at the paper's effect sizes."""
    from harness import calibration

    measured = calibration.tables(args.simulations, args.power_simulations, seed=args.seed)
    print(
        f"holds on data with no effect ({args.simulations} simulations each; acceptable: at most "
        f"{calibration.NULL_LIMIT:.0%}):"
    )
    print(calibration.format_table(measured.null))
    print(
        f"\nholds with one condition exactly at its threshold, the others comfortably met ({args.simulations} "
        f"simulations each; acceptable: at most {calibration.boundary_limit(args.simulations):.1%}, "
        f"{calibration.BOUNDARY_LIMIT:.1%} plus two Monte-Carlo standard errors):"
    )
    print(calibration.format_table(measured.boundary))
    print(f"\npower at the paper's effect sizes ({args.power_simulations} simulations each):")
    print(calibration.format_table(measured.power))
    print("\neach condition at the paper's effect sizes:")
    print(calibration.format_table(measured.conditions))
    return 0


def command_dry_run(args: argparse.Namespace) -> int:
    """Every stage at reduced sizes on a random-initialised pair of a registered pair's exact shape."""
    from pathlib import Path

    from harness import dry_run
    from harness.output import reports

    if not (args.pair or args.shape):
        raise BadInputError(
            f"name a registered pair's shape with --pair ({', '.join(dry_run.shape_names())}) or a "
            "config.json with --shape"
        )
    _check_output_file(args.out)
    sizes = dry_run.Sizes(
        profile_samples=args.samples, token_samples=min(args.token_samples, args.samples), lora_steps=args.lora_steps
    )
    result = dry_run.run_dry(
        args.shape or args.pair,
        dtype=args.dtype,
        device=args.device,
        sizes=sizes,
        pair_name=args.pair,
        on_stage=lambda stage: print(
            f"{stage.name}: {stage.seconds:.1f} s, peak host {stage.peak_host_mib:.0f} MiB", flush=True
        ),
    )
    print()
    print(dry_run.format_report(result))
    if args.out:
        reports.write_report(
            Path(args.out),
            reports.new_report(
                "dry-run",
                shape=result.name,
                dtype=result.dtype,
                device=result.device,
                **result.facts,
                stages=[vars(stage) for stage in result.stages],
                estimate_seconds=result.estimate,
            ),
        )
        print(f"\nreport: {args.out}")
    return 0


def command_build(args: argparse.Namespace) -> int:
    resolved = models.resolve_pair(_pair_from_args(args))
    print(pair_summary(resolved))
    return 0


def command_run(args: argparse.Namespace) -> int:
    """The main job on one pair: build or find it, describe it, verify every claim built so far."""
    from harness.output import reports

    reports.check_report_dir(args.report_dir)
    command_build(args)
    print()
    return command_verify(args)


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shard is I/N, e.g. 1/2; got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"shard {text}: I must lie between 1 and N")
    return index, count


def build_parser() -> argparse.ArgumentParser:
    from harness import options

    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered pairs and whether they can be loaded here").set_defaults(
        handler=command_list
    )
    build = commands.add_parser("build", help="build (or find cached) a pair and describe it")
    _add_pair_options(build)
    build.set_defaults(handler=command_build)
    for name, handler, text in (
        ("run", command_run, "the main job: describe a pair and verify every claim"),
        ("verify", command_verify, "verify every claim on a pair; report and figures"),
    ):
        sub = commands.add_parser(name, help=text)
        _add_pair_options(sub)
        _add_profile_options(sub)
        sub.add_argument(
            "--report-dir",
            default="reports",
            help="where reports go: <dir>/<pair>/<UTC time>-<commit>/, with <dir>/<pair>/latest",
        )
        sub.add_argument("--no-tune", action="store_true", help="skip the LoRA study (C4, C8)")
        _add_settings_options(sub, evaluation=True)
        sub.set_defaults(handler=handler)
    tune = commands.add_parser("tune", help="train and score budget-matched LoRA arms (C4, C8, controls)")
    _add_pair_options(tune)
    tune.add_argument(
        "--pairs", default=None, help="comma-separated registered pairs to study one after another (instead of --pair)"
    )
    _add_profile_options(tune)
    tune.add_argument(
        "--masks",
        help="comma-separated segment masks to train, e.g. 01100,11111 (default: the "
        "whole study: every M = 5 mask, the controls and the block finder's choice)",
    )
    from harness import options as shared_options

    shared_options.add_options(tune.add_argument, shared_options.STUDY_OPTIONS, command_line=True)
    tune.add_argument(
        "--seeds",
        type=shared_options.seed_number("--seeds"),
        nargs="+",
        default=None,
        help="training seeds (default: the config's)",
    )
    tune.add_argument("--steps", type=int, default=None, help="training steps per arm (default: the config's)")
    tune.add_argument("--full-rank", type=int, default=None, help="rank of the full-depth arm; sets the budget")
    tune.add_argument(
        "--scaling",
        choices=("constant_ratio", "fixed_alpha"),
        default=None,
        help="constant alpha/r (default), or the paper code's fixed alpha at every rank",
    )
    tune.add_argument("--learning-rate", type=float, default=None)
    tune.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="train only every N-th run of the study, starting at the I-th, into the cache: N "
        "processes (or machines sharing the cache) train a study between them",
    )
    tune.add_argument(
        "--share",
        action="store_true",
        help="train the runs no other process is training into the cache, then wait for the others': "
        "processes on one machine (or a shared file system) split a study as they go",
    )
    tune.add_argument("--slurm-partition", default=None)
    tune.add_argument("--slurm-timeout-min", type=int, default=None)
    tune.add_argument(
        "--report-dir",
        default="reports",
        help="where reports go: <dir>/<pair>/<UTC time>-<commit>/, with <dir>/<pair>/latest",
    )
    _add_settings_options(tune)
    tune.set_defaults(handler=command_tune)
    evaluate_parser = commands.add_parser("evaluate", help="score base and SFT with lm-eval")
    _add_pair_options(evaluate_parser)
    # the shared options (--tasks a,b --num_fewshot --max_gen_toks --limit, lm-eval's spellings or with hyphens)
    evaluate_parser.add_argument(
        "--model",
        choices=("hf", "vllm"),
        default="hf",
        help="lm-eval backend: hf (transformers, the default) or vllm (the vllm extra, on a GPU; real checkpoints)",
    )
    evaluate_parser.add_argument(
        "--batch_size",
        "--batch-size",
        dest="batch_size",
        default=None,
        type=options.batch_size,
        help="auto or a whole number; default: auto on a GPU (lm-eval's search), 8 on the CPU",
    )
    evaluate_parser.add_argument("--seed", type=options.seed_number("--seed"), default=0)
    evaluate_parser.add_argument("--device", default="auto")
    evaluate_parser.add_argument("--out", help="write the scores as JSON")
    _add_settings_options(evaluate_parser, evaluation=True)
    evaluate_parser.set_defaults(handler=command_evaluate)
    swap_parser = commands.add_parser("swap", help="layer-swap scores and the C3 verdicts")
    _add_pair_options(swap_parser)
    swap_parser.add_argument(
        "--segments", type=options.segment_count, nargs="+", default=[3, 5, 10], help="values of M (at least 3)"
    )
    swap_parser.add_argument("--device", default="auto")
    _add_settings_options(swap_parser)
    swap_parser.set_defaults(handler=command_swap)
    calibrate = commands.add_parser("calibrate", help="false holds on simulated no-effect data, and power")
    calibrate.add_argument(
        "--simulations", type=options.simulation_count, default=500, help="simulations per claim and scenario"
    )
    calibrate.add_argument(
        "--power-simulations",
        type=options.simulation_count,
        default=100,
        help="simulations per claim at the paper's effect sizes (the paper's data sizes)",
    )
    calibrate.add_argument("--seed", type=options.seed_number("--seed"), default=0)
    calibrate.set_defaults(handler=command_calibrate)
    diff = commands.add_parser(
        "diff", help="compare two reports of any kind, or one with its stored baseline; exit 1 on drift"
    )
    diff.add_argument(
        "baseline",
        help="the reference report or baseline file (alone: the report to compare "
        "with the stored baselines of its pairs)",
    )
    diff.add_argument("current", nargs="?", help="the report or baseline to compare with the first")
    diff.add_argument("--baselines-dir", default="baselines", help="where stored baselines are (one argument)")
    diff.add_argument("--pair", help="compare only this pair")
    diff.add_argument(
        "--limit",
        type=options.whole_number_of_at_least(0, "--limit"),
        default=60,
        help="rows of differences to print per pair",
    )
    diff.set_defaults(handler=command_diff)
    dry = commands.add_parser(
        "dry-run",
        help="every stage at reduced sizes on a random pair of a registered pair's "
        "shape: time and memory per stage, and the full run's estimate",
    )
    dry.add_argument("--pair", help="whose shape (its architecture ships with the harness; no weights)")
    dry.add_argument("--shape", help="a config.json of another architecture instead")
    dry.add_argument("--dtype", default="bfloat16")
    dry.add_argument("--device", default="auto", help="auto (the GPU when present), cpu, cuda")
    # checked before the shape pair is built (gigabytes of checkpoints for a 7B shape)
    dry.add_argument(
        "--samples",
        type=options.whole_number_of_at_least(2, "--samples (dataset metrics need two)"),
        default=16,
        help="probe samples of the profile stage",
    )
    dry.add_argument(
        "--token-samples",
        type=options.whole_number_of_at_least(0, "--token-samples"),
        default=4,
        help="of which with token-level metrics",
    )
    dry.add_argument(
        "--lora-steps", type=options.whole_number_of_at_least(1, "--lora-steps"), default=3, help="LoRA steps per arm"
    )
    dry.add_argument("--out", help="write the figures as a JSON report")
    dry.set_defaults(handler=command_dry_run)
    rescore_parser = commands.add_parser(
        "rescore", help="every verdict of a stored report again, under other thresholds, without loading a model"
    )
    rescore_parser.add_argument(
        "report", help="a report file, a run folder, or a pair's folder of reports (its latest run)"
    )
    _add_settings_options(rescore_parser)  # neither given: the thresholds the report was written with
    rescore_parser.add_argument("--out", help="write the rescored report here")
    rescore_parser.set_defaults(handler=command_rescore)
    profile_parser = commands.add_parser("profile", help="per-layer metrics of a pair, written as a JSON report")
    _add_pair_options(profile_parser)
    _add_profile_options(profile_parser)
    profile_parser.add_argument("--out", required=True, help="where to write the JSON report")
    profile_parser.set_defaults(handler=command_profile)
    return parser


def _check_before_any_work(args: argparse.Namespace) -> None:
    """A device this machine lacks, a dtype no model runs in, or too few probe samples for the verdicts, is
    refused before any work (before `harness run` builds its pair)."""
    if getattr(args, "device", None) is not None:
        models.check_device(args.device)
    if getattr(args, "dtype", None) is not None:
        models.resolve_dtype(args.dtype)
    if args.command in ("run", "verify"):
        from harness import verification

        verification.check_verifiable_samples(args.pooled_samples)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.plants import build  # the command line can name the planted controls as pairs

    build.register()
    try:
        _check_before_any_work(args)
        return args.handler(args)
    except BadInputError as error:  # what a user's input causes: one line, exit 2; anything else is a bug and
        print(f"error: {error}", file=sys.stderr)  # keeps its traceback
        return 2
    except KeyboardInterrupt:  # the user's stop, not a bug: every finished step is in the cache
        print(
            f"\ninterrupted: run `harness {args.command}` again to resume (finished steps are read from the cache)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
