"""report: every arm this project ran, against the classical baseline and the published results.

An *arm* is a training profile whose models were evaluated: ``reports/metrics/<profile>.json``
exists (the pipeline's profile from ``dvc repro``; another, such as the pure-RL ``cpu-rl``,
from ``make arm``). For each, the test scores of its models, their validation scores
(``reports/train/<profile>/metrics.json``) and their answers
(``reports/evaluate/<profile>/<model>/predictions.jsonl``; on validation
``reports/train/<profile>/validation_answers.jsonl``), from which every weighted F1 gets its
bootstrap interval; the two baselines of the baseline stage (TF-IDF + SVM, the task's prior)
likewise, and the task's published results. Writes ``reports/comparison/``:
comparison.md/.csv/.png (the F1 table and chart), curves.png (the arms' reward and
validation curves over GRPO steps) and errors.md (per-label F1, sample answers with their
reasoning, rows every model gets wrong the same way), all logged to MLflow.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger

from flows.baseline import PRIOR_METRICS_FILE, PRIOR_PREDICTIONS_FILE
from flows.cli import run
from people_relation.comparison import (
    ArmModel,
    Difference,
    Row,
    comparison_rows,
    differences_table,
    error_report,
    markdown_table,
    method_name,
    published_rows,
)
from people_relation.infra.io import project_path, read_json, read_jsonl, read_numeric_csv, read_settings, staged_dir
from people_relation.infra.paths import Arm, metrics_path, resolve_arm
from people_relation.infra.plots import arm_curves, comparison_bars
from people_relation.infra.tracking import mlflow_run, parent_run_id
from people_relation.metrics import bootstrap_difference, bootstrap_interval
from people_relation.params import ParamsError
from people_relation.predictions import PREDICTIONS, scored_answer
from people_relation.rewards import log_key, recorded_reward
from people_relation.settings import PRETRAINED, SCRATCH, Evaluate, Intervals, Profile, Settings
from people_relation.task import Task

SUMMARY_METRICS = ("weighted_f1", "macro_f1", "accuracy", "invalid_rate")


def model_label(prof: Profile, name: str) -> str:
    source = prof.model.source
    if source == SCRATCH:
        return f"Qwen2 from scratch ({name} profile)"
    return f"Qwen2 pretrained on the corpus ({name} profile)" if source == PRETRAINED else source


def arms(settings: Settings) -> list[str]:
    """The profiles with evaluated models, the pipeline's own first. An arm whose test
    scores are here but not its answers (they stay in the DVC cache of the checkout that
    ran it as the pipeline's profile) is left out, with a warning saying how to add it."""
    first = settings.train.profile
    names = [first, *(n for n in settings.profiles if n != first)]
    found = []
    for name in (n for n in names if metrics_path(settings.evaluate, n).is_file()):
        tested = read_json(metrics_path(settings.evaluate, name))
        phases = [p for p, s in tested.items() if isinstance(s, dict) and "weighted_f1" in s]
        missing = [p for p in phases if not predictions_path(settings.evaluate, name, p).is_file()]
        if missing and name != first:
            get_run_logger().warning(
                "arm %s is left out of the comparison: its test answers (%s) are missing; "
                "`make arm ARM=%s` trains and evaluates it again",
                name,
                ", ".join(str(predictions_path(settings.evaluate, name, p)) for p in missing),
                name,
            )
            continue
        found.append(name)
    return found


def interval(task: Task, intervals: Intervals, gold: list[str], answers: list[str | None]) -> tuple[float, float]:
    return bootstrap_interval(task.labels, gold, answers, intervals.resamples, intervals.level, intervals.seed)


def arm_models(arm: Arm) -> list[ArmModel]:
    """The arm's evaluated models, each with its test and validation scores and intervals
    (no validation interval for an arm trained before its answers were kept)."""
    settings, name, prof, paths = arm.settings, arm.name, arm.profile, arm.paths
    tested = read_json(metrics_path(settings.evaluate, name))
    validated = read_json(paths.metrics) if paths.metrics.is_file() else {}
    val_rows = read_jsonl(paths.validation_answers) if paths.validation_answers.is_file() else []
    labels = (prof.warmup.labels or "gold") if prof.warmup.enabled else None
    intervals = settings.report.intervals
    task = settings.task
    models = []
    for phase, scores in tested.items():
        if not (isinstance(scores, dict) and "weighted_f1" in scores):
            continue
        test = read_jsonl(predictions_path(settings.evaluate, name, phase))
        models.append(
            ArmModel(
                arm=name,
                phase=phase,
                method=method_name(phase, labels, task.prior_title),
                model=model_label(prof, name),
                test=scores,
                validation_f1=(validated.get(phase) or {}).get("weighted_f1"),
                test_ci=interval(task, intervals, [r["label"] for r in test], [scored_answer(r) for r in test]),
                validation_ci=interval(task, intervals, [r["label"] for r in val_rows], [r[phase] for r in val_rows])
                if val_rows and phase in val_rows[0]
                else None,
            )
        )
    return models


PHASE_NAMES = {"warmup": "warm-up", "base": "base model", "grpo": "GRPO"}


@dataclass(frozen=True)
class ArmAnswers:
    """Every evaluated model's answers of one arm, by row id: gold labels and each phase's
    answer, on the validation rows (kept by the train step) and the test rows (evaluate)."""

    phases: list[str]
    val_gold: dict[str, str]
    val: dict[str, dict[str, str | None]]
    test_gold: dict[str, str]
    test: dict[str, dict[str, str | None]]


def arm_answers(arm: Arm) -> ArmAnswers:
    settings, name, paths = arm.settings, arm.name, arm.paths
    tested = read_json(metrics_path(settings.evaluate, name))
    phases = [p for p, s in tested.items() if isinstance(s, dict) and "weighted_f1" in s]
    val = read_jsonl(paths.validation_answers) if paths.validation_answers.is_file() else []
    test_rows = {p: read_jsonl(predictions_path(settings.evaluate, name, p)) for p in phases}
    return ArmAnswers(
        phases=phases,
        val_gold={r["id"]: r["label"] for r in val},
        val={p: {r["id"]: r[p] for r in val if p in r} for p in phases},
        test_gold={r["id"]: r["label"] for rows in test_rows.values() for r in rows},
        test={p: {r["id"]: scored_answer(r) for r in rows} for p, rows in test_rows.items()},
    )


def paired(
    task: Task,
    intervals: Intervals,
    gold: dict[str, str],
    first: dict[str, str | None],
    second: dict[str, str | None],
) -> tuple[float, float, float] | None:
    """Weighted F1 of ``first`` minus ``second`` on the rows both answered, with the paired
    bootstrap interval; None when they share no row."""
    ids = sorted(set(gold) & set(first) & set(second))
    if not ids:
        return None
    i = intervals
    return bootstrap_difference(
        task.labels,
        [gold[k] for k in ids],
        [first[k] for k in ids],
        [second[k] for k in ids],
        i.resamples,
        i.level,
        i.seed,
    )


def paired_differences(arm: Arm) -> list[Difference]:
    """What GRPO changed in ``arm``, each difference on the same rows with its paired
    interval: GRPO against the arm's start (its other evaluated model), and against the
    task's prior, on validation and test. Empty for an arm without a GRPO model."""
    settings, name, task = arm.settings, arm.name, arm.settings.task
    a = arm_answers(arm)
    if "grpo" not in a.phases:
        return []
    i = settings.report.intervals
    out = []
    for start in (p for p in a.phases if p != "grpo"):
        out.append(
            Difference(
                name,
                f"GRPO − {PHASE_NAMES.get(start, start)}",
                paired(task, i, a.val_gold, a.val["grpo"], a.val.get(start, {})),
                paired(task, i, a.test_gold, a.test["grpo"], a.test[start]),
            )
        )
    rules = project_path(settings.baseline.reports_dir) / PRIOR_PREDICTIONS_FILE
    if task.prior is not None and rules.is_file():
        said = {s: {} for s in ("validation", "test")}
        for r in read_jsonl(rules):
            said[r["split"]][r["id"]] = r["predicted"]
        out.append(
            Difference(
                name,
                f"GRPO − {task.prior_title}",
                paired(task, i, a.val_gold, a.val["grpo"], said["validation"]),
                paired(task, i, a.test_gold, a.test["grpo"], said["test"]),
            )
        )
    return out


def arm_differences(arm: Arm, against: Arm) -> list[Difference]:
    """``arm`` against another arm, phase by phase (each model it shares with ``against``):
    what a different start (a pretrained model, another warm-up) changed, paired on the rows."""
    a, b = arm_answers(arm), arm_answers(against)
    i, task = arm.settings.report.intervals, arm.settings.task
    return [
        Difference(
            arm.name,
            f"{PHASE_NAMES.get(p, p)} − {against.name}'s {PHASE_NAMES.get(p, p)}",
            paired(task, i, a.val_gold, a.val.get(p, {}), b.val.get(p, {})),
            paired(task, i, a.test_gold, a.test[p], b.test[p]),
        )
        for p in a.phases
        if p in b.phases
    ]


def predictions_path(evaluate: Evaluate, arm: str, phase: str) -> Path:
    return project_path(evaluate.reports_dir) / arm / phase / PREDICTIONS


def predictions(evaluate: Evaluate, model: ArmModel) -> dict[str, dict[str, Any]]:
    """The model's published answers (the evaluation writes them whole), by row id."""
    return {r["id"]: r for r in read_jsonl(predictions_path(evaluate, model.arm, model.phase))}


def baseline_rows(settings: Settings) -> list[Row]:
    """The baseline stage's rows, when it ran: TF-IDF + SVM and the task's prior (when it has
    one), each on validation and test with intervals."""
    folder = project_path(settings.baseline.reports_dir)
    intervals = settings.report.intervals
    rows = []
    for metrics_file, answers_files, model in (
        ("metrics.json", {s: f"{s}_predictions.jsonl" for s in ("validation", "test")}, "scikit-learn"),
        (PRIOR_METRICS_FILE, {s: PRIOR_PREDICTIONS_FILE for s in ("validation", "test")}, "rules"),
    ):
        if not (folder / metrics_file).is_file():
            continue
        metrics = read_json(folder / metrics_file)
        if not metrics.get("method"):  # a task without a prior
            continue
        ci = {}
        for split, file in answers_files.items():
            # the prior's file holds both splits, each row marked; a baseline file, one split
            path = folder / file
            answers = [r for r in read_jsonl(path) if r.get("split", split) == split] if path.is_file() else []
            gold, said = [r["label"] for r in answers], [r["predicted"] for r in answers]
            ci[split] = interval(settings.task, intervals, gold, said) if answers else None
        rows.append(
            Row(
                metrics["method"],
                model,
                float(metrics["test"]["weighted_f1"]),
                "measured here",
                float(metrics["validation"]["weighted_f1"]),
                ci["test"],
                ci["validation"],
            )
        )
    return rows


@flow(name="report", log_prints=True)
def report_flow(params_file: str = "params.yaml", run: str | None = None) -> list[dict]:
    settings = read_settings(params_file, run)
    names = arms(settings)
    if settings.train.profile not in names:
        missing = metrics_path(settings.evaluate, settings.train.profile)
        raise ParamsError(f"{missing} is missing: run the evaluate step first")
    resolved = [resolve_arm(settings, name) for name in names]
    models = [m for arm in resolved for m in arm_models(arm)]
    baseline_dir = project_path(settings.baseline.reports_dir)
    baseline = read_json(baseline_dir / "metrics.json") if (baseline_dir / "metrics.json").is_file() else None
    rows = comparison_rows(models, baseline_rows(settings), published_rows(settings.task))
    level = settings.report.intervals.level
    table = markdown_table(rows, level)
    differences = [d for arm in resolved for d in paired_differences(arm)]
    by_name = {arm.name: arm for arm in resolved}
    for k, pair in enumerate(settings.report.arm_pairs):
        unknown = [n for n in (pair.arm, pair.against) if n not in settings.profiles]
        if unknown:
            raise ParamsError(
                f"params.yaml: report.arm_pairs[{k}] names {', '.join(map(repr, unknown))}; "
                f"the profiles are {', '.join(settings.profiles)}"
            )
    differences += [
        d
        for pair in settings.report.arm_pairs
        if pair.arm in by_name and pair.against in by_name
        for d in arm_differences(by_name[pair.arm], by_name[pair.against])
    ]
    if differences:
        table += (
            "\nWhat GRPO changed, and what each arm's start changed against another arm's"
            " (`report.arm_pairs`), paired: the difference of weighted F1 on the same rows, each with"
            " the interval of the same resampled rows for both models.\n\n" + differences_table(differences, level)
        )
    answers = {m.name: predictions(settings.evaluate, m) for m in models}
    shared = set.intersection(*(set(a) for a in answers.values()))
    if not shared:
        counts = ", ".join(f"{n}: {len(a)} rows" for n, a in answers.items())
        raise ParamsError(f"the arms' evaluations share no test row ({counts}); evaluate them on the same split")
    first = answers[models[0].name]
    gold = {i: first[i] for i in sorted(shared)}
    baseline_answers = None
    if (baseline_dir / "test_predictions.jsonl").is_file():
        baseline_answers = {r["id"]: r["predicted"] for r in read_jsonl(baseline_dir / "test_predictions.jsonl")}
    errors = error_report(
        settings.task, gold, answers, baseline_answers, samples=settings.report.error_samples, seed=settings.report.seed
    )
    dpi = settings.reports.chart_dpi
    window = settings.train.reward_window
    out_dir = project_path(settings.report.dir)
    with mlflow_run(settings.tracking, settings.train.profile, "report", {"arms": names}), staged_dir(out_dir) as out:
        (out / "comparison.md").write_text(table, encoding="utf-8")
        (out / "errors.md").write_text(errors, encoding="utf-8")
        with (out / "comparison.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        tested = read_json(metrics_path(settings.evaluate, names[0]))
        comparison_bars(
            [(f"{r.method} ({r.model})", r.weighted_f1, r.source) for r in rows],
            title=f"Weighted F1 on the {tested['rows']}-row {tested['split']} split",
            xlabel=f"weighted F1 (%) on the {tested['rows']}-row {tested['split']} set",
            path=out / "comparison.png",
            dpi=dpi,
        )
        arm_curves(
            curves(resolved),
            reward_key=log_key(recorded_reward(settings.task)),
            validation_key="eval_greedy_weighted_f1",
            smooth=window,
            title="GRPO in each arm",
            path=out / "curves.png",
            dpi=dpi,
        )
        mlflow.log_table({k: [getattr(r, k) for r in rows] for k in asdict(rows[0])}, "report/comparison.json")
        # the pipeline's arm keeps its plain names (grpo/test_weighted_f1): pipeline runs compare by them
        prefix = {m.name: m.phase if m.arm == names[0] else m.name for m in models}
        summary = {f"{prefix[m.name]}/test_{k}": m.test[k] for m in models for k in SUMMARY_METRICS if k in m.test}
        if baseline:
            summary["baseline/test_weighted_f1"] = baseline["test"]["weighted_f1"]
        mlflow.log_metrics(summary)
        files = [out / f for f in ("comparison.png", "comparison.md", "curves.png", "errors.md")]
        for file in files:
            mlflow.log_artifact(str(file), "report")
        if parent := parent_run_id():
            # the pipeline run carries the headline numbers: the experiment view compares runs by them
            client = mlflow.MlflowClient()
            for key, value in summary.items():
                client.log_metric(parent, key, value)
            for file in files:
                client.log_artifact(parent, str(file), "report")
    get_run_logger().info("Comparison of %s:\n%s", ", ".join(names), table)
    return [asdict(r) for r in rows]


def curves(resolved: list[Arm]) -> dict[str, tuple[list, list]]:
    """Each arm's reward and validation histories (empty when the arm has none)."""

    def rows(path: Path) -> list[dict[str, float]]:
        return read_numeric_csv(path) if path.is_file() else []

    return {arm.name: (rows(arm.paths.history), rows(arm.paths.validation_history)) for arm in resolved}


if __name__ == "__main__":
    run(report_flow)
