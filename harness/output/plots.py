"""The paper's figures for each measured pair, and a one-page Markdown summary beside the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness import cache, depth  # noqa: E402


def _subplots(rows: int = 1, columns: int = 1, figsize=None, layout=None, **grid):
    """A figure on its own Agg canvas: files only, and neither pyplot's global state nor the backend of the
    process that imports the harness (another project's tests) is touched."""
    figure = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, **grid)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    temporary.replace(path)
    return path


def _shade_tail(axis, rows) -> None:
    """Grey band over the last 20% of decoder layers: where the paper locates the change."""
    rows = list(rows)
    n_layers = max(rows)
    tail = [row for row in rows if depth.is_tail_row(row, n_layers)]
    if tail:
        axis.axvspan(min(tail) - 0.5, max(tail) + 0.5, color="0.9", zorder=0, label="last 20%")


def _band(axis, rows, measured, kind: str, column: str, point, **style) -> None:
    """The pointwise 95% jackknife interval of a per-layer series about ``point``, from the pair's resampler
    (none without one)."""
    resampler = getattr(measured, "resampler", None) if measured is not None else None
    if resampler is None:
        return
    low, high = resampler.band(kind, column, point)
    axis.fill_between(list(rows), low, high, alpha=0.25, linewidth=0, **style)


def _estimate(measured, column: str, plug_in):
    """The series a verdict reads for ``column``: its debiased estimate where it has one, else ``plug_in``."""
    resampler = getattr(measured, "resampler", None) if measured is not None else None
    if resampler is None:
        return plug_in
    return resampler.estimates().get(column, plug_in)


def _titled(label: str, measured, claim: str) -> str:
    verdict = measured.verdict(claim) if measured is not None else None
    return f"{label}\n{claim} {verdict.outcome}" if verdict is not None else label


def divergence_figure(name: str, pair, path: Path, measured=None) -> Path:
    """Fig. 1: CKA, cosine similarity and mean shift per layer, with 95% bands, the last 20% shaded, C1's CKA
    plateau threshold as a line and C1's verdict in the titles."""
    figure, axes = _subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    for axis, column, label in zip(
        axes, ("cka", "cosine", "mean_shift"), ("linear CKA", "cosine", "mean shift"), strict=True
    ):
        _shade_tail(axis, pair.index)
        estimate = _estimate(measured, column, pair[column])
        _band(axis, pair.index, measured, "pair", column, estimate, color="tab:blue")
        axis.plot(pair.index, estimate, marker="o", label="estimate")
        if estimate is not pair[column]:
            axis.plot(pair.index, pair[column], linestyle=":", color="0.4", label="plug-in (paper)")
        axis.set_xlabel("layer")
        axis.set_title(_titled(label, measured, "C1"))
    if measured is not None:
        axes[0].axhline(
            measured.thresholds["C1"]["cka_plateau_min"], color="tab:red", linestyle="--", label="plateau threshold"
        )
        axes[0].legend(fontsize=7)
    figure.suptitle(f"{name}: base vs SFT")
    return _save(figure, path)


def intrinsic_figure(name: str, base, sft, path: Path) -> Path:
    """Fig. 2: intrinsic metrics of base and SFT per layer."""
    columns = ("effective_rank", "dataset_entropy", "prompt_entropy", "curvature", "condition_number", "spectral_norm")
    figure, axes = _subplots(2, 3, figsize=(12, 6.5), layout="constrained")
    for axis, column in zip(axes.flat, columns, strict=True):
        axis.plot(base.index, base[column], marker="o", label="base")
        axis.plot(sft.index, sft[column], marker="s", label="SFT")
        axis.set_title(column.replace("_", " "))
        axis.set_xlabel("layer")
        if column == "condition_number":
            axis.set_yscale("log")
    axes.flat[0].legend()
    figure.suptitle(f"{name}: intrinsic metrics")
    return _save(figure, path)


def probing_figure(name: str, base, sft, path: Path, measured=None) -> Path:
    """Fig. 3: logit-lens next-token accuracy per layer, with 95% bands, the last 20% shaded, C5's dormancy
    threshold as a line and C5's verdict in the title."""
    figure, axis = _subplots(figsize=(5, 3.4))
    _shade_tail(axis, base.index)
    for model, table, marker in (("base", base, "o"), ("sft", sft, "s")):
        (line,) = axis.plot(
            table.index, table["probe_accuracy"], marker=marker, label=model if model == "base" else "SFT"
        )
        _band(
            axis,
            table.index,
            measured,
            "pair",
            f"{model}.probe_accuracy",
            table["probe_accuracy"],
            color=line.get_color(),
        )
    if measured is not None:
        axis.axhline(
            measured.thresholds["C5"]["dormant_max"], color="tab:red", linestyle="--", label="dormancy threshold"
        )
    axis.set_xlabel("layer")
    axis.set_ylabel("next-token accuracy")
    axis.set_title(_titled(f"{name}: logit lens", measured, "C5"))
    axis.legend(fontsize=7)
    return _save(figure, path)


def weight_change_figure(name: str, pair, path: Path, measured=None) -> Path:
    """Fig. 4: Q/K/V/O weight change per layer (eq. 1; exact, no interval), the last 20% shaded and C2's
    verdict in the title."""
    figure, axis = _subplots(figsize=(5, 3.4))
    change = pair["weight_change"].dropna()
    _shade_tail(axis, pair.index)
    axis.bar(change.index, change.values)
    axis.set_xlabel("layer")
    axis.set_ylabel("‖W_sft − W_base‖ (Q/K/V/O)")
    axis.set_title(_titled(f"{name}: weight change", measured, "C2"))
    return _save(figure, path)


def correlation_figure(name: str, pair, path: Path) -> Path:
    """Fig. 5: Pearson correlation across layers between weight change and the representation metrics."""
    columns = [
        c
        for c in (
            "weight_change",
            "cka",
            "cosine",
            "mean_shift",
            "delta_effective_rank",
            "delta_spectral_norm",
            "delta_condition_number",
            "delta_dataset_entropy",
        )
        if c in pair.columns
    ]
    matrix = pair[columns].dropna().corr().to_numpy()
    figure, axis = _subplots(figsize=(6.5, 5.5))
    image = axis.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
    axis.set_xticks(range(len(columns)), columns, rotation=60, ha="right")
    axis.set_yticks(range(len(columns)), columns)
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image)
    axis.set_title(f"{name}: correlations across layers")
    return _save(figure, path)


def lora_figure(name: str, study, path: Path) -> Path:
    """Fig. 7: task score per LoRA arm (mean over seeds, each seed a dot), with answer log-likelihood and
    retention perplexity beside it; every arm has the same budget."""
    table = study.table()
    summary = study.summary()
    arms = list(dict.fromkeys(table["arm"]))
    # a retention set that could not be read here (a real one offline) has no perplexity to draw
    retention = [c for c in summary.columns if c.startswith("ppl:") and summary[c].notna().any()]
    panels = [("score", f"{study.settings.task} exact match"), ("answer_loglik", "answer log-likelihood")]
    panels += [(column, f"perplexity, {column[4:]}") for column in retention]
    figure, axes = _subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), layout="constrained", squeeze=False)
    positions = np.arange(len(arms))
    for axis, (column, label) in zip(axes[0], panels, strict=True):
        means = summary.loc[arms, column]
        spread = table.groupby("arm")[column].std().reindex(arms)  # between seeds
        axis.bar(
            positions,
            means,
            yerr=spread.fillna(0).to_numpy(),
            capsize=3,
            color=["tab:orange" if "middle" in str(summary.loc[a, "roles"]) else "tab:blue" for a in arms],
        )
        for offset, seed in enumerate(study.settings.seeds):
            rows = table[table["seed"] == seed].set_index("arm").loc[arms]
            axis.plot(
                positions + (offset - (len(study.settings.seeds) - 1) / 2) * 0.15, rows[column], "k.", markersize=4
            )
        untuned = summary.loc["base", column]
        if untuned is not None and np.isfinite(float(untuned)):
            axis.axhline(untuned, color="grey", linestyle="--", label="untuned base")
        axis.set_xticks(positions, arms, rotation=60, ha="right", fontsize=7)
        axis.set_title(label)
    axes[0][0].legend(fontsize=7)
    verdicts = ", ".join(f"{key} {v.outcome}" for key, v in sorted(study.verdicts.items()))
    figure.suptitle(
        f"{name}: budget-matched LoRA arms (orange: middle masks; dots: seeds; bars: sd over seeds)"
        + (f"\n{verdicts}" if verdicts else "")
    )
    return _save(figure, path)


def _number_or_unavailable(value) -> str:
    """A retention perplexity for a table cell: a set that could not be read here (a real one offline) has none."""
    return "unavailable" if value is None or not np.isfinite(float(value)) else f"{value:.2f}"


def lora_markdown(name: str, study) -> list[str]:
    summary = study.summary()
    lines = [
        f"### {name}: LoRA arms (budget {study.plan.arms[0].full_budget} rank-modules, seeds "
        f"{list(study.settings.seeds)}, {study.settings.steps} steps, task `{study.settings.task}`)",
        "",
        "| arm | roles | rank | trainable | score (mean) | sd over seeds | answer log-lik. | "
        + " | ".join(c for c in summary.columns if c.startswith("ppl:"))
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * sum(c.startswith("ppl:") for c in summary.columns),
    ]
    for arm, row in summary.iterrows():
        ppl = " | ".join(_number_or_unavailable(row[c]) for c in summary.columns if c.startswith("ppl:"))
        lines.append(
            f"| {arm} | {row['roles']} | {int(row['rank'])} | {int(row['trainable']):,} | {row['score']:.3f} "
            f"| {row['score_sd']:.3f} | {row['answer_loglik']:.3f} | {ppl} |"
        )
    finder = study.finder_rank()
    if finder:
        lines += [
            "",
            f"Block finder (training-free) proposed `{finder['mask']}`"
            f"{' (no middle segment was stable: the calmest was taken)' if finder['fallback'] else ''}; "
            f"it ranks {finder['rank']} of {finder['of']} arms (score {finder['score']:.3f}; best "
            f"`{finder['best_arm']}` {finder['best_score']:.3f}).",
        ]
    lines += [f"- {key} not given: {reason}" for key, reason in sorted(study.skipped.items())]
    return lines + ["", f"![lora]({name}-lora.png)", ""]


VERDICT_HEADER = [
    "| claim | outcome | condition | value | 95% interval | threshold | threshold source |",
    "|---|---|---|---|---|---|---|",
]


def _verdict_rows(verdicts: dict) -> list[str]:
    """One row per condition, the claim's outcome on its first row; reported-only conditions in italics."""
    rows = []
    for claim, verdict in sorted(verdicts.items()):
        outcome = verdict.outcome if verdict.outcome == "holds" else f"**{verdict.outcome}**"
        for index, c in enumerate(verdict.conditions):
            ci = f"[{c.interval[0]:.4g}, {c.interval[1]:.4g}]" if c.interval else "exact"
            value = f"{c.value:.4g}" if c.value == c.value else "undefined"
            name = c.name if c.decides else f"*{c.name} (reported)*"
            head = f"{claim} {verdict.title} | {outcome}" if index == 0 else " | "
            rows.append(
                f"| {head} | {name}: {c.outcome} | {value} | {ci} | {c.comparison} {c.threshold:.4g} "
                f"| {c.source or '–'} |"
            )
    return rows


def summary_markdown(measured: dict, studies: dict | None = None) -> str:
    studies = studies or {}
    lines = ["# Layer-wise SFT claims", ""]
    for name, m in sorted(measured.items()):
        meta = m.profile.meta
        lines += [
            f"## {name}",
            "",
            f"base `{meta['pair']['base']}`, SFT `{meta['pair']['sft']}`; probe set `{meta['probe']['name']}` "
            f"({meta['probe']['samples']} samples, digest {meta['probe']['digest']}); "
            f"{meta['layers']['count']} layers (0 = embedding output).",
            "",
            *VERDICT_HEADER,
        ]
        lines += _verdict_rows({**m.verdicts, **(studies[name].verdicts if name in studies else {})})
        lines += ["", *(f"![{kind}]({name}-{kind}.png)" for kind in FIGURES), ""]
        if name in studies:
            lines += lora_markdown(name, studies[name])
    for name, study in sorted(studies.items()):
        if name not in measured:
            lines += [
                f"## {name}",
                "",
                *VERDICT_HEADER,
                *_verdict_rows(study.verdicts),
                "",
                *lora_markdown(name, study),
            ]
    return "\n".join(lines)


FIGURES = ("divergence", "intrinsic", "probing", "weight-change", "correlation")


def write_figures(folder: Path, measured: dict, studies: dict | None = None) -> list[Path]:
    """Every figure of every measured pair and LoRA study, and summary.md, into ``folder``."""
    studies = studies or {}
    written = [lora_figure(name, study, folder / f"{name}-lora.png") for name, study in sorted(studies.items())]
    for name, m in sorted(measured.items()):
        p = m.profile
        written += [
            divergence_figure(name, p.pair, folder / f"{name}-divergence.png", m),
            intrinsic_figure(name, p.base, p.sft, folder / f"{name}-intrinsic.png"),
            probing_figure(name, p.base, p.sft, folder / f"{name}-probing.png", m),
            weight_change_figure(name, p.pair, folder / f"{name}-weight-change.png", m),
            correlation_figure(name, p.pair, folder / f"{name}-correlation.png"),
        ]
    summary = folder / "summary.md"
    cache.write_text_atomic(summary, summary_markdown(measured, studies))
    written.append(summary)
    return written


OUTCOME_COLOURS = {"holds": "tab:green", "inconclusive": "tab:orange", "refuted": "tab:red"}


def dose_response_figure(ladder: str, responses: dict[str, list[dict]], path: Path) -> Path:
    """Each claim's statistic against the planted dose of a ladder of controls, with its interval, its
    threshold as a line and each rung's outcome as the marker's colour."""
    claims_shown = sorted(responses)
    figure, axes = _subplots(
        1, len(claims_shown), figsize=(4.2 * len(claims_shown), 3.4), layout="constrained", squeeze=False
    )
    for axis, claim in zip(axes[0], claims_shown, strict=True):
        rows = responses[claim]
        doses = [row["dose"] for row in rows]
        values = np.array([row["value"] for row in rows])
        errors = np.array(
            [[row["value"] - row["ci_low"] for row in rows], [row["ci_high"] - row["value"] for row in rows]]
        )
        axis.errorbar(doses, values, yerr=np.clip(errors, 0, None), color="0.4", capsize=2, zorder=1)
        axis.scatter(doses, values, c=[OUTCOME_COLOURS[row["outcome"]] for row in rows], zorder=2)
        axis.axhline(rows[0]["threshold"], color="black", linestyle="--", label="threshold")
        axis.set_xscale("symlog", linthresh=min([d for d in doses if d > 0], default=1.0))
        axis.set_xlim(0, max(doses) * 1.5 or 1.0)
        axis.set_xlabel("planted dose")
        axis.set_ylabel(rows[0]["statistic"])
        axis.set_title(claim)
    for outcome, colour in OUTCOME_COLOURS.items():
        axes[0][0].scatter([], [], c=colour, label=outcome)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{ladder}: verdict against planted dose")
    return _save(figure, path)


def swap_figure(name: str, swaps, path: Path) -> Path:
    """Fig. 6: answer log-likelihood with each segment swapped, per direction and number of segments."""
    directions = sorted(swaps.results)
    figure, axes = _subplots(
        1, len(directions), figsize=(5.5 * len(directions), 3.4), layout="constrained", squeeze=False
    )
    for axis, direction in zip(axes[0], directions, strict=True):
        result = swaps.results[direction]
        for count, rows in sorted(result["segments"].items()):
            centres = [(np.mean(row["layers"]) + 1) / result["n_layers"] for row in rows]
            axis.errorbar(
                centres,
                [row["score"] for row in rows],
                yerr=[row["stderr"] for row in rows],
                marker="o",
                capsize=2,
                label=f"M = {count}",
            )
        axis.axhline(result["host"]["score"], color="grey", linestyle="--", label="no swap")
        axis.set_xlabel("relative depth of the swapped segment")
        axis.set_ylabel("answer log-likelihood")
        axis.set_title(direction.replace("_", " "))
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{name}: layer swaps")
    return _save(figure, path)


def write_swap_figures(folder: Path, swaps: dict) -> list[Path]:
    return [swap_figure(name, s, folder / f"{name}-layer-swap.png") for name, s in sorted(swaps.items()) if s.results]
