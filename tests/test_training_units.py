import random

import pytest
import torch

from people_relation.augment import mention_names, swap_names, swappable
from people_relation.dataset import Example
from people_relation.metrics import INVALID, scores
from people_relation.prompt import TAGS
from people_relation.training.tokenizer import build_tokenizer, load_tokenizer
from people_relation.training.warmup import collate, encode, weighted_loss

TEXT = "程砚秋与果素瑛生有三子一女，即程永光、程永源、程永江和程慧贞。"


def example(id_: str, split: str, line: int, text: str, people1: str, people2: str, label: str) -> Example:
    return Example(id_, split, line, {"text": text, "people1": people1, "people2": people2}, label)


EX = example("train-00001", "train", 2, TEXT, "果素瑛", "程永光", "父母")


@pytest.fixture(scope="module")
def tokenizer(task):
    return build_tokenizer(task, [TEXT, "张三李四王五赵六", "甲乙丙丁"])


def test_target_completion_earns_every_reward_of_the_task(task):
    completion = task.target_completion({"text": "甲和乙", "people1": "甲", "people2": "乙"}, "夫妻")
    functions, _ = task.reward_functions(["夫妻"])
    assert [f.__name__ for f in functions] == ["format_reward", "label_reward"]
    assert [f([completion], label=["夫妻"]) for f in functions] == [[1.0], [1.0]]
    assert task.parse(completion).label == "夫妻"


def test_prompt_round_trips_and_is_short(task, tokenizer):
    prompt = task.render_prompt(tokenizer, EX.inputs)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == prompt
    assert len(ids) < len(TEXT) + 30  # the constant pieces are single tokens


def test_tags_labels_and_prompt_pieces_are_single_tokens_kept_by_skip_special(task, tokenizer):
    assert task.vocabulary_pieces() == (*TAGS, *task.labels, *task.prompt_pieces())
    for piece in task.vocabulary_pieces():
        assert len(tokenizer(piece, add_special_tokens=False)["input_ids"]) == 1, piece
    completion = task.target_completion(EX.inputs, "父母")
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == completion


def test_saved_tokenizer_loads_identically(task, tokenizer, tmp_path):
    from transformers import Qwen2Config

    tokenizer.save_pretrained(tmp_path)
    Qwen2Config(vocab_size=len(tokenizer)).save_pretrained(tmp_path)  # a qwen2 model folder
    loaded = load_tokenizer(tmp_path)
    prompt = task.render_prompt(loaded, EX.inputs)
    assert loaded(prompt)["input_ids"] == tokenizer(prompt)["input_ids"]
    assert loaded.decode(loaded(prompt)["input_ids"]) == prompt
    assert loaded.eos_token == "<|im_end|>" and loaded.pad_token == "<|endoftext|>"


def test_name_swap_replaces_every_occurrence(task):
    ex = example("x", "train", 2, "甲是乙的父亲，乙敬爱甲。", "甲", "乙", "父母")
    swapped = swap_names(ex, task.mentions, ["张三", "李四", "王五"], random.Random(0))
    assert swapped.label == "父母" and (swapped.id, swapped.line) == ("x", 2)
    assert swapped["people1"] != "甲" and swapped["people2"] != "乙"
    assert {swapped["people1"], swapped["people2"]} <= {"张三", "李四", "王五"}
    p1, p2 = swapped["people1"], swapped["people2"]
    assert swapped["text"] == f"{p1}是{p2}的父亲，{p2}敬爱{p1}。"
    assert list(swapped.inputs) == list(task.fields)  # the fields keep their order
    assert ex["text"] == "甲是乙的父亲，乙敬爱甲。"  # the original is untouched
    assert mention_names([ex, swapped], task.mentions) == sorted({"甲", "乙", p1, p2})


def test_name_swap_leaves_nested_or_identical_names_and_rows_without_mentions(task):
    nested = example("x", "train", 2, "伊丽莎白·泰勒即泰勒", "伊丽莎白·泰勒", "泰勒", "同一个人")
    assert not swappable(nested, task.mentions)
    assert swap_names(nested, task.mentions, ["张三", "李四"], random.Random(0)) is nested
    same = example("x", "train", 2, "甲即甲", "甲", "甲", "同一个人")
    assert not swappable(same, task.mentions)
    plain = example("x", "train", 2, "甲是乙的父亲。", "甲", "乙", "父母")
    assert swappable(plain, task.mentions) and not swappable(plain, {})  # a task without mention fields
    assert swap_names(plain, {}, ["张三", "李四"], random.Random(0)) is plain


def test_warmup_weights_prompt_and_completion(task, tokenizer):
    ids, weights = encode(task, tokenizer, EX, lm_weight=0.25)
    assert ids[-1] == tokenizer.eos_token_id
    prompt_len = len(tokenizer(task.render_prompt(tokenizer, EX.inputs), add_special_tokens=False)["input_ids"])
    completion = task.target_completion(EX.inputs, EX.label)
    completion_len = len(tokenizer(completion, add_special_tokens=False)["input_ids"]) + 1
    assert len(ids) == prompt_len + completion_len
    assert weights[-completion_len:] == [1.0] * completion_len
    assert set(weights[:-completion_len]) == {0.25}
    # the label token, where the model decides, weighs label_weight; the rest stays 1
    ids, weights = encode(task, tokenizer, EX, lm_weight=0.25, label_weight=2.0)
    label_at = ids.index(tokenizer.convert_tokens_to_ids(EX.label), prompt_len)
    assert weights[label_at] == 2.0 and sorted(weights[prompt_len:]) == [1.0] * (completion_len - 1) + [2.0]


def test_weighted_loss_ignores_zero_weight_and_padding():
    batch = collate([([1, 2, 3], [0.0, 1.0, 1.0]), ([1, 2], [0.0, 1.0])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 2, 0]]
    logits = torch.zeros(2, 3, 5)
    logits[:, :, 2] = 10.0  # confident in token 2 everywhere
    loss = weighted_loss(logits, batch["input_ids"], batch["weights"])
    # targets: row0 -> 2 (right), 3 (wrong); row1 -> 2 (right); padding has weight 0
    expected = (
        torch.log1p(torch.tensor(4 * torch.exp(torch.tensor(-10.0)).item())) * 2
        + torch.log(torch.tensor(4.0) + torch.exp(torch.tensor(10.0)))
    ) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_scores_count_invalid_answers_as_wrong(task):
    result = scores(task.labels, ["夫妻", "父母", "不知道", "夫妻"], ["夫妻", None, "朋友", "夫妻"])
    assert result["accuracy"] == 0.5
    assert result["invalid_rate"] == 0.5
    assert 0 < result["weighted_f1"] < 1
    assert INVALID not in task.labels
    with pytest.raises(ValueError):
        scores(task.labels, ["夫妻"], [])
    # an answer outside the labels given is invalid, even one of another task's labels
    assert scores(["夫妻", "父母"], ["夫妻", "父母"], ["夫妻", "不知道"])["invalid_rate"] == 0.5


def test_history_keeps_one_row_per_step_without_timings(tmp_path):
    import csv

    from people_relation.training.grpo import write_history

    log_history = [
        {"step": 1, "reward": 1.0, "step_time": 1.2},
        {"step": 2, "reward": 1.5, "step_time": 1.1},
        {"step": 2, "eval_greedy_weighted_f1": 0.2, "eval_runtime": 3.0, "eval_greedy_over_limit": None},
        {"step": 2, "reward": 1.6, "step_time": 1.3},  # the same step again after a resume
        {"step": 4, "eval_greedy_weighted_f1": 0.3, "eval_greedy_over_limit": "不知道"},
    ]
    path = tmp_path / "h.csv"
    assert write_history(log_history, path) == 2
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["step"], r["reward"]) for r in rows] == [("1", "1.0"), ("2", "1.6")]
    assert "step_time" not in rows[0]
    assert write_history(log_history, path, key="eval_greedy_weighted_f1") == 2
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert set(rows[0]) == {"step", "eval_greedy_weighted_f1", "eval_greedy_over_limit"}
    assert rows[1]["eval_greedy_over_limit"] == "不知道"


def test_selection_names_the_published_step():
    from types import SimpleNamespace

    from people_relation.training.grpo import selection

    state = SimpleNamespace(
        best_global_step=50,
        best_metric=0.31,
        global_step=75,
        log_history=[{"step": 75, "collapse_guard": "collapse guard: ..."}],
    )
    best = selection(state, "best", "eval_greedy_weighted_f1")
    assert best["published_step"] == 50 and best["last_step"] == 75 and best["collapse_guard"]
    assert selection(state, "last", "eval_greedy_weighted_f1")["published_step"] == 75
    state.best_global_step = None  # never evaluated after the start: the last step is what there is
    assert selection(state, "best", "eval_greedy_weighted_f1")["published_step"] == 75


def test_selection_reports_the_check_half_of_the_chosen_step_and_the_start():
    from types import SimpleNamespace

    from people_relation.training.grpo import selection

    history = [
        {"step": 0, "eval_greedy_select_weighted_f1": 0.30, "eval_greedy_check_weighted_f1": 0.31},
        {"step": 25, "eval_greedy_select_weighted_f1": 0.45, "eval_greedy_check_weighted_f1": 0.38},
        {"step": 50, "eval_greedy_select_weighted_f1": 0.40, "eval_greedy_check_weighted_f1": 0.44},
    ]
    state = SimpleNamespace(best_global_step=25, best_metric=0.45, global_step=50, log_history=history)
    chosen = selection(state, "best", "eval_greedy_select_weighted_f1")
    assert chosen["published_step"] == 25 and chosen["best_value"] == 0.45
    assert chosen["check_metric"] == "eval_greedy_check_weighted_f1"
    assert (chosen["check_value"], chosen["check_start"]) == (0.38, 0.31)


def test_selection_halves_split_each_label_and_keep_duplicate_inputs_together(task):
    from people_relation.training.grpo import selection_halves

    labels = task.labels
    # pairs of rows 2k, 2k+1 below 20 share an input (and its label)
    texts = [f"句子{i // 2}" if i < 20 else f"句子{i}" for i in range(80)]
    rows = [example(f"r{i}", "validation", i, texts[i], "甲", "乙", labels[(i // 2) % 4]) for i in range(80)]
    halves = selection_halves(rows, seed=0)
    select, check = halves["select"], halves["check"]
    assert sorted(select + check) == list(range(80)) and not set(select) & set(check)
    for label in labels[:4]:
        counts = [sum(rows[i].label == label for i in half) for half in (select, check)]
        assert abs(counts[0] - counts[1]) <= 2
    for i in range(0, 20, 2):  # rows 2k and 2k+1 share an input: always on the same side
        assert (i in select) == (i + 1 in select)
    assert selection_halves(rows, seed=0) == halves and selection_halves(rows, seed=1) != halves


def test_an_epoch_keeps_every_relation_row_and_a_share_of_the_unknown_ones(task):
    from people_relation.training.warmup import epoch_rows

    none = task.none_label
    rows = [example(f"r{i}", "train", i, f"甲和乙{i}", "甲", "乙", none if i % 4 else "夫妻") for i in range(400)]
    everything = epoch_rows(rows, none, 1.0, random.Random(0))
    assert everything == rows
    first, second = (epoch_rows(rows, none, 0.25, random.Random(seed)) for seed in (0, 1))
    for epoch in (first, second):
        assert sum(e.label == "夫妻" for e in epoch) == 100
        assert sum(e.label == none for e in epoch) == 75
        assert [e.id for e in epoch] == [e.id for e in rows if e in epoch]  # the order kept
    assert first != second  # a fresh draw every epoch
    # the share applies to the none label only: a task without one keeps every row
    assert epoch_rows(rows, None, 0.25, random.Random(0)) == rows
    assert len(epoch_rows(rows, "夫妻", 0.25, random.Random(0))) == 300 + 25


def test_the_recorder_follows_the_tasks_recorded_reward_in_training_only(task):
    from people_relation.training.grpo import CompletionRecorder

    recorder = CompletionRecorder(task)
    format_fn, label_fn = (recorder.wrap(f) for f in task.reward_functions(["夫妻"])[0])
    assert (format_fn.__name__, label_fn.__name__) == ("format_reward", "label_reward")  # what TRL logs
    completions = [task.target_completion(EX.inputs, "夫妻"), task.target_completion(EX.inputs, "父母"), "乱"]
    kwargs = {"label": ["夫妻", "夫妻", "父母"], "id": ["a", "a", "b"], "prompts": ["p"] * 3}
    assert format_fn(completions, **kwargs) == [1.0, 1.0, 0.0]
    assert recorder.completions == 0  # the format reward is not the recorded one
    assert label_fn(completions, **kwargs) == [1.0, 0.0, 0.0]
    recorder.is_training = lambda: False
    label_fn(completions, **kwargs)  # an evaluation batch: not counted
    assert recorder.latest[0]["label_reward"] == 1.0 and recorder.latest[2]["completion"] == "乱"
    step = recorder.take_step()
    assert step == {
        "completions": 3,
        "prompt_ids": ["a", "b"],
        "answers": ["夫妻", "父母", None],
        "golds": ["夫妻", "夫妻", "父母"],
        "label_rewards": [1.0, 0.0, 0.0],
    }
    assert recorder.take_step()["completions"] == 0


@pytest.mark.integration
def test_on_cpu_trl_scores_the_completion_tokens_alone_and_gets_the_same_log_probs(monkeypatch):
    """TRL's fused LM head scores every position on CPU (only the labelled ones on GPUs);
    ``score_completions_only_on_cpu`` makes the CPU score what a GPU scores: the same
    log-probs and gradients, from the completion's rows alone."""
    import trl.trainer.utils as trl_utils
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from people_relation.training.grpo import score_completions_only_on_cpu

    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # undone after the test
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=3000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
    )
    model = Qwen2ForCausalLM(config)
    add_fused_lm_head(model, temperature=0.9, cast_lm_head_to_fp32=False, outputs=("log_probs", "entropy"))
    ids = torch.randint(0, config.vocab_size, (3, 100))
    attention = torch.ones_like(ids)
    attention[0, -4:] = 0  # a shorter completion, padded
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, :-12] = -100  # the prompt: 88 positions that count for nothing
    scored_rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        scored_rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)

    def scored():
        model.zero_grad()
        log_probs = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True).log_probs
        log_probs[:, -12:].sum().backward()
        return log_probs[:, -12:].detach(), model.model.layers[0].mlp.up_proj.weight.grad.clone()

    every_position = scored()
    assert score_completions_only_on_cpu() and score_completions_only_on_cpu()  # idempotent
    completions_only = scored()
    assert scored_rows == [3 * 99, 3 * 12 - 4]
    assert torch.equal(every_position[0], completions_only[0])
    assert torch.allclose(every_position[1], completions_only[1], atol=1e-6)


class _Regression(torch.nn.Module):
    """The smallest model transformers' Trainer trains: one weight, a squared error."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        return {"loss": ((self.w * x - y) ** 2).mean()}


def _trainer(output_dir, callbacks):
    from transformers import Trainer, TrainingArguments

    rows = [{"x": torch.tensor([float(i)]), "y": torch.tensor([2.0 * i])} for i in range(16)]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=2,
        save_steps=1,
        per_device_train_batch_size=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return Trainer(model=_Regression(), args=args, train_dataset=rows, callbacks=callbacks)


@pytest.mark.integration
def test_a_run_resumed_from_its_last_checkpoint_trains_no_step_past_the_end(tmp_path):
    """A run killed after saving its last checkpoint, before publishing: transformers,
    resumed there, trains one step past ``max_steps``; the GRPO run stops before it."""
    from people_relation.training.grpo import StopWhenComplete, TrainingComplete

    _trainer(tmp_path, []).train()
    last = tmp_path / "checkpoint-2"
    assert last.is_dir()

    plain = _trainer(tmp_path, [])
    plain.train(resume_from_checkpoint=str(last))
    assert plain.state.global_step == 3  # the premise: one step too many

    guarded = _trainer(tmp_path / "guarded", [StopWhenComplete()])
    with pytest.raises(TrainingComplete):
        guarded.train(resume_from_checkpoint=str(last))
    assert guarded.state.global_step == 2
    assert [e["step"] for e in guarded.state.log_history if "loss" in e] == [1, 2]


def test_a_checkpoints_folder_is_held_only_for_the_run_that_claimed_it(tmp_path):
    """What every training process checks after the main one claimed the folder: a machine
    that does not share the folder does not see the claim, and must stop."""
    from people_relation.infra.io import claim_checkpoint_dir, holds_claim

    folder = tmp_path / "grpo"
    assert not holds_claim(folder, "run-a")
    claim_checkpoint_dir(folder, "run-a")
    assert holds_claim(folder, "run-a") and not holds_claim(folder, "run-b")
    claim_checkpoint_dir(folder, "run-b")
    assert holds_claim(folder, "run-b") and not holds_claim(folder, "run-a")
