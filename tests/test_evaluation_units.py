"""The pure pieces of serving and evaluation: records, resume, scores, comparison, commands."""

from __future__ import annotations

import json
import random
import socket

import numpy as np
import pytest

from people_relation.baseline import MARKS, fit_predict, masked_text
from people_relation.comparison import (
    ArmModel,
    Row,
    comparison_rows,
    error_report,
    markdown_table,
    method_name,
    published_rows,
)
from people_relation.dataset import Example
from people_relation.errors import ServerError
from people_relation.infra.processes import pick_port
from people_relation.metrics import (
    INVALID,
    bootstrap_difference,
    bootstrap_interval,
    confusion,
    report_text,
    resampled_weighted_f1,
    scores,
)
from people_relation.params import ParamsError
from people_relation.predictions import FIELDS, missing, ordered, read_records, record, scored_answer
from people_relation.query import QueryError, make_query
from people_relation.serving.client import Sampling, request_body
from people_relation.serving.commands import serve_command, serve_env
from people_relation.settings import parse_settings, with_values


def ex(i: int, label: str = "夫妻", text: str = "张三和李四结婚了", p1: str = "张三", p2: str = "李四") -> Example:
    inputs = {"text": text, "people1": p1, "people2": p2}
    return Example(id=f"test-{i:05d}", split="test", line=i + 2, inputs=inputs, label=label)


def flag_values(command: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of a command line; a flag followed by another flag has None."""
    flags: dict[str, str | None] = {}
    for i, token in enumerate(command):
        if token.startswith("--"):
            following = command[i + 1] if i + 1 < len(command) else None
            flags[token] = None if following is None or following.startswith("--") else following
    return flags


GOOD = "张三和李四的关系是夫妻。\n</think>\n<answer>夫妻</answer>"


def test_record_parses_and_flags_validity(task):
    good = record(task, ex(0), GOOD, 0.12345)
    # the id, the row's input fields (the task's, in order), then the answer
    assert list(good) == [FIELDS[0], *task.fields, *FIELDS[1:]]
    assert [good[f] for f in task.fields] == ["张三和李四结婚了", "张三", "李四"] and good["label"] == "夫妻"
    assert good["latency_s"] == 0.1235
    assert (good["think"], good["answer"], good["format_ok"], good["valid"]) == (
        "张三和李四的关系是夫妻。",
        "夫妻",
        True,
        True,
    )
    not_label = record(task, ex(1), "x\n</think>\n<answer>夫妻俩</answer>", 0.1)
    assert not_label["format_ok"] and not not_label["valid"] and scored_answer(not_label) is None
    broken = record(task, ex(2), "乱码", 0.1)
    assert not broken["format_ok"] and not broken["valid"] and scored_answer(broken) is None


def test_torn_last_line_is_dropped_and_only_missing_rows_are_asked(tmp_path, task):
    path = tmp_path / "predictions.jsonl"
    rows = [ex(i) for i in range(4)]
    with path.open("w", encoding="utf-8") as fh:
        for e in rows[:2]:
            fh.write(json.dumps(record(task, e, GOOD, 0.1), ensure_ascii=False) + "\n")
        fh.write('{"id": "test-00002", "text": "张三')  # killed mid-write
    done, dropped = read_records(path)
    assert sorted(done) == ["test-00000", "test-00001"] and dropped == 1
    assert [e.id for e in missing(rows, done)] == ["test-00002", "test-00003"]
    with pytest.raises(ValueError, match="2 rows have no prediction"):
        ordered(rows, done)


def test_missing_file_means_nothing_done(tmp_path):
    assert read_records(tmp_path / "absent.jsonl") == ({}, 0)


def test_report_and_confusion_count_invalid_answers_as_their_own_column(task):
    labels = task.labels
    gold = ["夫妻", "夫妻", "父母"]
    pred = ["夫妻", None, "夫妻"]
    text = report_text(labels, gold, pred)
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("夫妻"))
    assert line.split()[1:] == ["0.5000", "0.5000", "0.5000", "2"]  # 4 digits, as published
    columns, matrix = confusion(labels, gold, pred)
    assert columns == [*labels, INVALID] and len(matrix) == len(labels) == 14
    row = matrix[labels.index("夫妻")]
    assert row[labels.index("夫妻")] == 1 and row[-1] == 1
    assert matrix[labels.index("父母")][labels.index("夫妻")] == 1


def _model(arm, phase, labels, f1, val=None, test_ci=None, val_ci=None):
    return ArmModel(arm, phase, method_name(phase, labels), f"tiny ({arm})", {"weighted_f1": f1}, val, test_ci, val_ci)


def test_comparison_lists_every_arm_and_published_row_sorted_by_f1(task):
    models = [
        _model("cpu", "grpo", "gold", 0.5, 0.48),
        _model("cpu", "warmup", "gold", 0.45),
        _model("cpu-rl", "grpo", "random", 0.2, 0.19, (0.17, 0.23), (0.15, 0.235)),
    ]
    baselines = [
        Row("tf-idf", "scikit-learn", 0.64, "measured here", 0.63, (0.6, 0.68), (0.58, 0.69)),
        Row("keyword rules, no training", "rules", 0.44, "measured here", 0.42),
    ]
    published = published_rows(task)  # the task file's, quoted
    assert len(published) == len(task.published) == 7 and {r.source for r in published} == {"published"}
    assert {r.source for r in comparison_rows(models, baselines)} == {"this project", "measured here"}
    rows = comparison_rows(models, baselines, published)
    assert len(rows) == len(published) + 5 == 12
    assert [r.weighted_f1 for r in rows] == sorted((r.weighted_f1 for r in rows), reverse=True)
    assert {r.source for r in rows} == {"this project", "measured here", "published"}
    grpo_published = [r for r in rows if r.model == "Qwen2.5-7B-Instruct"]
    assert grpo_published[0].weighted_f1 == 0.8884
    table = markdown_table(rows)
    assert "| 88.84% |  | published |" in table
    assert (
        "| pure RL: GRPO after a random-label warm-up (cpu-rl) | tiny (cpu-rl) | 20.00% [17.0, 23.0] "
        "| 19.00% [15.0, 23.5] | this project |" in table
    )
    assert "| tf-idf | scikit-learn | 64.00% [60.0, 68.0] | 63.00% [58.0, 69.0] | measured here |" in table
    assert "| keyword rules, no training | rules | 44.00% | 42.00% | measured here |" in table
    assert "supervised warm-up + GRPO (cpu)" in table
    assert "[95% interval]" in table.splitlines()[0]


def test_method_names_say_what_each_arm_learned_from(task):
    assert method_name("warmup", "gold") == "supervised warm-up"
    assert method_name("warmup", "random") == "format warm-up (random labels)"
    assert "no gold label" in method_name("warmup", "prior")
    assert "gold labels only in the rewards" in method_name("grpo", "prior")
    # the prior named as the task calls it (the relation task's keyword rules)
    assert method_name("warmup", "prior", task.prior_title) == "warm-up on the keyword rules' answers (no gold label)"
    assert method_name("grpo", "prior", task.prior_title) == (
        "GRPO after the keyword-rules warm-up (gold labels only in the rewards)"
    )
    assert method_name("grpo", None) == "pure RL: GRPO"
    assert method_name("base", None) == "no training"


def test_bootstrap_scores_each_draw_as_scores_does(task):
    labels = task.labels
    rng = random.Random(0)
    gold = [rng.choice(labels) for _ in range(200)]
    said = [g if rng.random() < 0.5 else rng.choice([*labels, None, "not a label"]) for g in gold]
    draws = np.random.default_rng(3).integers(0, len(gold), size=(5, len(gold)))
    expected = [scores(labels, [gold[i] for i in d], [said[i] for i in d])["weighted_f1"] for d in draws]
    assert resampled_weighted_f1(labels, gold, said, draws) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_holds_the_score_and_narrows_with_rows(task):
    labels = task.labels
    rng = random.Random(1)

    def interval(n):
        gold = [rng.choice(labels) for _ in range(n)]
        said = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
        low, high = bootstrap_interval(labels, gold, said, resamples=1000, level=0.95, seed=0)
        assert low < scores(labels, gold, said)["weighted_f1"] < high
        assert bootstrap_interval(labels, gold, said, 1000, 0.95, 0) == (low, high)  # seeded: the same interval
        return high - low

    wide, narrow = interval(300), interval(3000)
    assert 0.05 < wide < 0.2 and narrow < wide / 2
    perfect = [rng.choice(labels) for _ in range(100)]
    assert bootstrap_interval(labels, perfect, perfect, 200, 0.95, 0) == (1.0, 1.0)


def test_a_paired_difference_cancels_the_rows_both_models_share(task):
    labels = task.labels
    rng = random.Random(2)
    gold = [rng.choice(labels) for _ in range(400)]
    weak = [g if rng.random() < 0.4 else rng.choice(labels) for g in gold]
    # the stronger model answers as the weaker one does, and right on a tenth more rows
    strong = [g if (w == g or rng.random() < 0.1) else w for g, w in zip(gold, weak, strict=True)]
    point, low, high = bootstrap_difference(labels, gold, strong, weak, resamples=1000, level=0.95, seed=0)
    assert point == pytest.approx(
        scores(labels, gold, strong)["weighted_f1"] - scores(labels, gold, weak)["weighted_f1"]
    )
    assert 0 < low < point < high
    # paired, the interval is narrower than the two models' own intervals suggest
    own = [bootstrap_interval(labels, gold, s, 1000, 0.95, 0) for s in (strong, weak)]
    assert high - low < min(h - lo for lo, h in own)
    assert bootstrap_difference(labels, gold, weak, weak, 200, 0.95, 0) == (0.0, 0.0, 0.0)


def _records(answers):
    return {f"r{i}": {"answer": a, "valid": a is not None, "think": f"理由{i}"} for i, a in enumerate(answers)}


def test_error_report_names_per_label_f1_samples_and_shared_mistakes(task):
    gold = {
        f"r{i}": {"text": f"句子{i}", "people1": "甲", "people2": "乙", "label": label}
        for i, label in enumerate(["夫妻", "父母", "不知道", "夫妻"])
    }
    answers = {
        "cpu/grpo": _records(["夫妻", "夫妻", "不知道", None]),
        "cpu-rl/grpo": _records(["夫妻", "夫妻", "父母", "夫妻"]),
    }
    baseline = {"r0": "夫妻", "r1": "夫妻", "r2": "不知道", "r3": "夫妻"}
    text = error_report(task, gold, answers, baseline, samples=1, seed=0)
    assert "| 夫妻 | 2 | 0.500 | 0.800 | 0.800 |" in text  # per-label F1 of the three
    assert "## cpu/grpo: 2 right, 2 wrong" in text and "## cpu-rl/grpo: 2 right, 2 wrong" in text
    assert text.count("| right |") == 2 and text.count("| wrong |") == 2
    # r1: every model that beats the majority answer says 夫妻, gold 父母 (r2: they disagree)
    assert "The models agree against the gold label: 1 rows" in text
    assert "| r1 | 句子1 | 甲, 乙 | 父母 | 夫妻 |" in text
    # the columns are the task's input fields: the text, then the others
    assert "| row | text | people1, people2 | gold | all answer |" in text
    assert text.count("| | text | people1, people2 | gold | answer | reasoning |") == 2
    # a model answering one label for every row is no judge: it would agree with nothing
    answers["stuck"] = _records(["不知道"] * 4)
    text = error_report(task, gold, answers, baseline, samples=1, seed=0)
    assert "— cpu/grpo, cpu-rl/grpo, baseline —" in text and "| r1 |" in text


@pytest.mark.parametrize(
    "text, p1, p2, problem",
    [
        ("   ", "张三", "李四", "^text is empty$"),
        ("张三和李四结婚了", "王五", "李四", "^people1 '王五' does not occur in the text$"),
        ("张三和李四结婚了", "张三", "", "^people2 is empty$"),
        (
            "张三和李四" + "很" * 300,
            "张三",
            "李四",
            r"^text has 305 characters; at most 256 are allowed \(query\.max_chars\)$",
        ),
        ("张三和李四结婚了", None, "李四", "^people1 is empty$"),
        ("张三和李四结婚了", 3, "李四", "^people1 must be a string$"),
        ("张三<|im_end|>李四", "张三", "李四", "text holds chat-template control token"),
    ],
)
def test_bad_queries_are_refused_with_the_reason(task, text, p1, p2, problem):
    with pytest.raises(QueryError, match=problem):
        make_query(task, {"text": text, "people1": p1, "people2": p2}, max_chars=256)


def test_good_query_is_trimmed(task):
    q = make_query(task, {"text": " 张三和李四结婚了 ", "people1": "张三 ", "people2": "李四"}, max_chars=256)
    assert q.inputs == {"text": "张三和李四结婚了", "people1": "张三", "people2": "李四"}
    assert q.key == ("张三和李四结婚了", "张三", "李四") and q.label == ""


def test_cpu_serve_command_and_environment(settings):
    serve = settings.profile("cpu").serve
    command = serve_command(serve, "/m/grpo", "/m/grpo/tokenizer", "127.0.0.1", 8123, "people-relation", "py")
    assert command[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    flags = flag_values(command)
    assert flags["--model"] == "/m/grpo" and flags["--tokenizer"] == "/m/grpo/tokenizer"
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8123"
    assert "--enforce-eager" in command and "--tensor-parallel-size" not in command
    limits = settings.serve.limits
    env = serve_env(serve, "/cache", "s3cret", limits)
    assert flags["--middleware"] == "people_relation.serving.guard.RequestGuard"
    assert env["PEOPLE_RELATION_MAX_BODY_BYTES"] == str(limits.max_body_bytes)
    assert env["PEOPLE_RELATION_OPEN_ROUTES"] == ",".join(limits.open_routes)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == str(serve.kv_cache_gib) and env["VLLM_API_KEY"] == "s3cret"
    assert "s3cret" not in " ".join(command)  # never visible in `ps`
    assert "CUDA_VISIBLE_DEVICES" not in env
    in_process = serve_env(
        serve.model_copy(update={"engine_in_process": True, "reserved_cpus": 0}), "/cache", None, limits
    )
    assert in_process["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and in_process["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    not_in_process = serve.model_copy(update={"engine_in_process": False})
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in serve_env(not_in_process, "/c", None, limits)


def test_gpu_serve_command_uses_tensor_parallelism_and_its_gpus(params, settings):
    serve = settings.profile("qwen2.5-7b").serve.model_copy(update={"tensor_parallel_size": 2, "gpus": [0, 1]})
    command = serve_command(serve, "models/qwen2.5-7b/grpo", None, "127.0.0.1", 8000, "pr", "py")
    flags = flag_values(command)
    assert flags["--tensor-parallel-size"] == "2" and flags["--max-model-len"] == "1344"
    assert "--tokenizer" not in command and "--enforce-eager" not in command
    assert serve_env(serve, "/c", None, settings.serve.limits)["CUDA_VISIBLE_DEVICES"] == "0,1"
    # one GPU per tensor-parallel rank: a mismatch is refused when params.yaml is loaded
    raw = with_values(params, {})
    # the profile's own keys: its name holds a dot, which a dotted key from the top cannot address
    raw["profiles"]["qwen2.5-7b"] = with_values(
        raw["profiles"]["qwen2.5-7b"], {"serve.tensor_parallel_size": 2, "serve.gpus": [0]}
    )
    with pytest.raises(
        ParamsError, match=r"profiles\.qwen2\.5-7b: serve\.gpus must list serve\.tensor_parallel_size GPUs"
    ):
        parse_settings(raw)


def test_chat_request_continues_the_prefilled_assistant_turn(task):
    body = request_body(task, ex(0), "people-relation", Sampling(max_tokens=48))
    assert body["messages"] == task.build_messages(ex(0).inputs)  # the task's prompt, for this row
    assert body["messages"][1]["content"] == "文本：张三和李四结婚了\n人物1：张三\n人物2：李四"
    assert body["messages"][-1]["role"] == "assistant" and body["messages"][-1]["content"].endswith("<think>")
    assert body["extra_body"]["continue_final_message"] and not body["extra_body"]["add_generation_prompt"]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 48


def test_a_port_in_use_is_refused_and_zero_picks_a_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {taken} on 127.0.0.1 is in use"):
            pick_port("127.0.0.1", taken)
    assert pick_port("127.0.0.1", 0) > 0


def test_baseline_masks_longer_name_first_and_learns(task):
    mentions = list(task.mentions)
    assert mentions == ["people1", "people2"]
    e = ex(0, text="克林顿和切尔西·克林顿", p1="克林顿", p2="切尔西·克林顿")
    assert masked_text(e, mentions) == f"{MARKS[0]}和{MARKS[1]}"
    train = [ex(i, "夫妻", "张三的妻子李四") for i in range(5)] + [
        ex(9 + i, "父母", "张三的儿子李四") for i in range(5)
    ]
    (pred,) = fit_predict(mentions, train, [[ex(99, "夫妻", "王五的妻子赵六", "王五", "赵六")]], 1, 2, 1.0, True, 0)
    assert pred == ["夫妻"]


def test_the_report_pairs_grpo_with_its_start_and_with_the_rules(sandbox_params):
    """Each difference is GRPO's weighted F1 minus the other's on the same rows (the rows
    both answered), with the paired interval of ``bootstrap_difference``."""
    from flows.baseline import PRIOR_PREDICTIONS_FILE
    from flows.report import paired_differences
    from people_relation.infra.io import project_path, read_settings, write_json, write_jsonl
    from people_relation.infra.paths import metrics_path, resolve_arm

    settings = read_settings(sandbox_params())
    labels = settings.task.labels
    for folder in ("cpu/warmup", "cpu/grpo"):
        (project_path(settings.evaluate.reports_dir) / folder).mkdir(parents=True)
    for folder in (settings.evaluate.metrics_dir, settings.baseline.reports_dir, f"{settings.train.reports_dir}/cpu"):
        project_path(folder).mkdir(parents=True, exist_ok=True)
    rng = random.Random(4)
    gold = {f"t{i}": rng.choice(labels) for i in range(120)}
    said = {
        "warmup": {k: g if rng.random() < 0.4 else rng.choice(labels) for k, g in gold.items()},
        "grpo": {k: g if rng.random() < 0.6 else rng.choice(labels) for k, g in gold.items()},
        "rules": {k: g if rng.random() < 0.5 else "不知道" for k, g in gold.items()},
    }
    said["grpo"]["t0"] = "not a label"  # an invalid answer counts as wrong
    for phase in ("warmup", "grpo"):
        rows = [
            {"id": k, "label": g, "answer": said[phase][k], "valid": said[phase][k] in labels} for k, g in gold.items()
        ]
        write_jsonl(project_path(settings.evaluate.reports_dir) / "cpu" / phase / "predictions.jsonl", rows)
    write_json(
        metrics_path(settings.evaluate, "cpu"),
        {"rows": 120, "warmup": {"weighted_f1": 0.1}, "grpo": {"weighted_f1": 0.2}},
    )
    val_ids = list(gold)[:60]  # validation: other rows in reality; any ids do here
    arm = resolve_arm(settings, "cpu")
    paths = arm.paths
    write_jsonl(
        paths.validation_answers,
        [{"id": k, "label": gold[k], "warmup": said["warmup"][k], "grpo": said["grpo"][k]} for k in val_ids],
    )
    prior = [
        {"split": s, "id": k, "label": gold[k], "predicted": said["rules"][k]}
        for s, ids in (("validation", val_ids), ("test", list(gold)))
        for k in ids
    ]
    assert PRIOR_PREDICTIONS_FILE == "prior_predictions.jsonl"
    write_jsonl(project_path(settings.baseline.reports_dir) / PRIOR_PREDICTIONS_FILE, prior)

    start, rules = paired_differences(arm)
    i = settings.report.intervals

    def expected(ids, other):
        answers = lambda m: [said[m][k] if said[m][k] in labels else None for k in ids]  # noqa: E731
        return bootstrap_difference(
            labels, [gold[k] for k in ids], answers("grpo"), answers(other), i.resamples, i.level, i.seed
        )

    assert (start.arm, start.comparison) == ("cpu", "GRPO − warm-up")
    assert start.test == pytest.approx(expected(sorted(gold), "warmup"))
    assert start.validation == pytest.approx(expected(sorted(val_ids), "warmup"))
    assert rules.comparison == "GRPO − keyword rules"
    assert rules.test == pytest.approx(expected(sorted(gold), "rules"))
    assert rules.validation == pytest.approx(expected(sorted(val_ids), "rules"))
    write_json(metrics_path(settings.evaluate, "cpu"), {"rows": 120, "warmup": {"weighted_f1": 0.1}})
    assert paired_differences(arm) == []  # no GRPO model, nothing to pair
