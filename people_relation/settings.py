"""The shape of ``params.yaml``: every section and profile as typed, frozen settings.

``load_settings`` reads the file once and checks all of it before any work starts: an
unknown key (a typo), a value of the wrong type, a value out of range and two values that
do not go together each fail with the file, the dotted key and what is allowed. The file
keeps its shape, so ``dvc exp run -S key=value`` and DVC's params tracking work as before.

Every folder a stage writes is typed :data:`OutputDir`: :func:`reroot_outputs` moves them
all under another folder at once (a sandbox, a rehearsal) from this one list.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from people_relation.params import ParamsError, load_params

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
ModelPhase = Literal["base", "warmup", "grpo"]
DataSource = Literal["auto", "local", "hub"]
SplitStrategy = Literal["published", "stratified"]
ValidationEngine = Literal["transformers", "vllm"]
WarmupLabels = Literal["gold", "random", "keywords"]
LabelReward = Literal["published", "balanced"]
PromptSampling = Literal["natural", "balanced"]
VllmMode = Literal["off", "server", "colocate"]
GuardAction = Literal["stop", "warn", "off"]
Publish = Literal["best", "last"]


def _is_number(annotation: Any) -> bool:
    """``int`` or ``float`` (inside ``Annotated`` or ``X | None``), not ``bool``."""
    inner = _inner(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_is_number(a) for a in typing.get_args(annotation) if a is not type(None))
    return inner in (int, float)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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


class DataFiles(Section):
    train: Path_
    test: Path_


class Data(Section):
    source: DataSource
    local_dir: Path_
    hub_id: str
    hub_revision: str
    files: DataFiles
    prepared_dir: OutputDir


class Split(Section):
    strategy: SplitStrategy
    test_fraction: typing.Annotated[float, Field(gt=0, lt=1)]
    validation_fraction: typing.Annotated[float, Field(ge=0, lt=1)]
    seed: Count
    out_dir: OutputDir


class Reports(Section):
    data_dir: OutputDir
    split_dir: OutputDir
    chart_dpi: PositiveInt


class Tracking(Section):
    uri: str
    artifact_dir: OutputDir
    experiment: str
    registered_model: str


class Train(Section):
    profile: str
    models_dir: OutputDir
    checkpoints_dir: OutputDir
    reports_dir: OutputDir
    reward_window: PositiveInt


class Limits(Section):
    """What the request guard in front of the served API refuses (``serving/guard.py``)."""

    max_body_bytes: PositiveInt
    open_routes: tuple[str, ...]  # answered without the API key: liveness probes only


class Serve(Section):
    model: ModelPhase
    host: str
    port: Port
    served_model_name: str
    api_key_env: str
    startup_timeout_s: Positive
    stop_timeout_s: Positive
    cache_dir: Path_
    reports_dir: OutputDir
    smoke_rows: Count
    limits: Limits


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
    split: Literal["test", "validation"]
    max_rows: PositiveInt | None
    concurrency: PositiveInt
    request_timeout_s: Positive
    max_retries: Count
    answer_retries: Count
    state_dir: OutputDir
    reports_dir: OutputDir
    metrics_dir: OutputDir

    def client(self, concurrency: int | None = None) -> ClientSettings:
        return ClientSettings(
            concurrency=concurrency or self.concurrency, timeout_s=self.request_timeout_s, max_retries=self.max_retries
        )


class Baseline(Section):
    ngram_min: PositiveInt
    ngram_max: PositiveInt
    C: Positive
    mask_names: bool
    reports_dir: OutputDir

    @model_validator(mode="after")
    def _ngrams(self) -> Baseline:
        if self.ngram_max < self.ngram_min:
            raise ValueError(f"ngram_max ({self.ngram_max}) must be at least ngram_min ({self.ngram_min})")
        return self


class Intervals(Section):
    """Bootstrap intervals of every weighted F1 measured here: the rows of the split are
    resampled with replacement ``resamples`` times (a generator seeded with ``seed``) and
    the central ``level`` of the resampled scores is the interval."""

    resamples: PositiveInt
    level: typing.Annotated[float, Field(gt=0, lt=1)]
    seed: int


class Report(Section):
    dir: OutputDir
    error_samples: Count
    seed: int
    intervals: Intervals


class Pipeline(Section):
    retries: dict[Literal["prepare", "split", "train", "baseline", "serve", "evaluate", "report"], Count]
    retry_delay_s: NonNegative


class Predict(Section):
    max_chars: PositiveInt


class Demo(Section):
    """The demo page (``make demo``, ``apps/demo.py``): where it listens, which examples it offers."""

    host: str
    port: Port
    examples: Count  # rows of examples_split offered as clickable examples
    examples_split: Literal["validation", "test"]
    preview_chars: PositiveInt  # characters of an example's sentence shown on its button


# -- a profile: one model's recipe ---------------------------------------------------------


class Arch(Section):
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    max_positions: PositiveInt


class Lora(Section):
    r: PositiveInt
    alpha: Positive
    dropout: Fraction
    target_modules: list[str] = Field(min_length=1)


class Model(Section):
    source: str  # scratch: build the small model here; else a hub id or a local folder
    tokenizer: Literal["project", "auto"]
    seed: int | None = None
    arch: Arch | None = None
    lora: Lora | None = None

    @model_validator(mode="after")
    def _scratch(self) -> Model:
        if self.source == "scratch" and (self.arch is None or self.seed is None):
            raise ValueError("source 'scratch' builds a model here: it needs `arch` and `seed`")
        return self


class Warmup(Section):
    enabled: bool
    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    learning_rate: Positive | None = None
    weight_decay: NonNegative | None = None
    warmup_ratio: Fraction | None = None
    lm_weight: NonNegative | None = None
    label_weight: NonNegative | None = None
    swap_prob: Fraction | None = None
    seed: int | None = None
    bf16: bool | None = None
    log_every: PositiveInt | None = None
    labels: WarmupLabels | None = None
    # The share of the rows whose target answer is 不知道 kept in each epoch (a fresh draw
    # every epoch): with the keyword rules' answers, 不知道 is about three rows in four, and a
    # small model learns to answer it everywhere before it learns a single word. 1: all.
    unknown_keep: typing.Annotated[float, Field(gt=0, le=1)] = 1.0

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
    max_steps: PositiveInt
    learning_rate: Positive
    lr_scheduler_type: str
    warmup_ratio: typing.Annotated[float, Field(ge=0, lt=1)]
    weight_decay: NonNegative
    max_grad_norm: Positive
    beta: NonNegative
    use_bias_correction_kl: bool
    model_dtype: Literal["float32", "bfloat16", "auto"]
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"]
    scale_rewards: Literal["group", "batch", "none"]
    epsilon: Positive
    num_iterations: PositiveInt
    num_generations: typing.Annotated[int, Field(ge=2)]
    prompts_per_device: PositiveInt
    gradient_accumulation_steps: PositiveInt
    max_prompt_length: PositiveInt
    max_completion_length: PositiveInt
    mask_truncated_completions: bool
    temperature: Positive
    top_p: typing.Annotated[float, Field(gt=0, le=1)]
    top_k: Count
    repetition_penalty: Positive
    reward_weights: list[float] = Field(min_length=2, max_length=2)
    label_reward: LabelReward
    bf16: bool
    use_cpu: bool
    gradient_checkpointing: bool
    logging_steps: PositiveInt
    save_steps: PositiveInt
    save_total_limit: PositiveInt
    completions_every: PositiveInt
    seed: int
    vllm_mode: VllmMode
    vllm_importance_sampling_correction: bool
    prompt_sampling: PromptSampling
    eval_steps: PositiveInt
    eval_rows: PositiveInt | None
    eval_prompts_per_device: PositiveInt
    num_generations_eval: PositiveInt
    publish: Publish
    best_metric: Literal["weighted_f1", "macro_f1", "accuracy"]
    # The validation rows scored during GRPO are halved, stratified by label, with this seed:
    # the published checkpoint is the best by ``best_metric`` on the *select* half, and the
    # *check* half, which played no part in the choice, says what the choice is worth.
    selection_seed: int


class Vllm(Section):
    """TRL's generation server (``vllm_mode: server``) or engine (``colocate``)."""

    gpu_memory_utilization: typing.Annotated[float, Field(gt=0, le=1)]
    max_model_len: PositiveInt
    tensor_parallel_size: PositiveInt
    host: str | None = None
    port: Port | None = None
    group_port: Port | None = None
    gpus: list[Count] | None = None
    connect_timeout_s: Positive | None = None


class ProfileServe(Section):
    device: Literal["cpu", "gpu"]
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    max_model_len: PositiveInt
    max_num_seqs: PositiveInt
    enforce_eager: bool
    tensor_parallel_size: PositiveInt
    seed: int
    max_tokens: PositiveInt
    engine_in_process: bool | None = None
    kv_cache_gib: PositiveInt | None = None
    reserved_cpus: PositiveInt | None = None
    gpu_memory_utilization: typing.Annotated[float, Field(gt=0, le=1)] | None = None
    gpus: list[Count] | None = None

    def sampling(self, max_tokens: int | None = None) -> Sampling:
        """Greedy answers, ``max_tokens`` (default: this block's) long at most."""
        return Sampling(max_tokens=max_tokens or self.max_tokens, temperature=0.0, seed=self.seed)


class Validation(Section):
    engine: ValidationEngine
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    max_rows: PositiveInt | None


class Launch(Section):
    num_processes: PositiveInt
    accelerate_config: Path_ | None
    checkpoint_gib: Positive
    ddp_timeout_s: PositiveInt
    min_free_gib: NonNegative | None = None
    training_gpus: list[Count] | None = None


class CollapseGuard(Section):
    action: GuardAction
    ratio: Positive
    min_share: Fraction
    patience: PositiveInt


class Profile(Section):
    model: Model
    warmup: Warmup
    grpo: Grpo
    vllm: Vllm | None
    serve: ProfileServe
    validation: Validation
    launch: Launch
    collapse_guard: CollapseGuard
    evaluate_models: list[ModelPhase] = Field(min_length=1)
    register_model: bool

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
        if g.label_reward == "balanced" and g.scale_rewards == "group":
            problems.append(
                "grpo.label_reward 'balanced' needs grpo.scale_rewards 'batch' or 'none': 'group' divides "
                "each prompt's rewards by their spread, which cancels a per-label weight"
            )
        if launch.num_processes > 1 and self.model.lora is not None:
            problems.append("a LoRA profile (model.lora) trains in one process (launch.num_processes: 1)")
        if launch.num_processes > 1 and not launch.accelerate_config:
            problems.append("launch.num_processes > 1 needs launch.accelerate_config")
        if g.vllm_mode != "off" and self.vllm is None:
            problems.append(f"grpo.vllm_mode {g.vllm_mode!r} needs a `vllm` block")
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


# -- the rehearsal of a GPU profile on this CPU ----------------------------------------------


class StandIn(Arch):
    seed: int


class Rehearsal(Section):
    profile: str
    dir: OutputDir
    stand_in: StandIn
    substitute: dict[str, Any]  # dotted profile keys; which ones may change is checked by the rehearsal


class Settings(Section):
    data: Data
    split: Split
    reports: Reports
    tracking: Tracking
    train: Train
    serve: Serve
    evaluate: Evaluate
    baseline: Baseline
    report: Report
    pipeline: Pipeline
    predict: Predict
    demo: Demo
    rehearsal: Rehearsal
    profiles: dict[str, Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _profiles_named(self) -> Settings:
        for key, name in (("train.profile", self.train.profile), ("rehearsal.profile", self.rehearsal.profile)):
            if name not in self.profiles:
                raise ValueError(f"{key} is {name!r}; the profiles are {', '.join(self.profiles)}")
        return self

    def profile(self, name: str | None = None) -> Profile:
        """Profile ``name`` (default: ``train.profile``), or a ParamsError naming the defined ones."""
        name = name or self.train.profile
        if name not in self.profiles:
            raise ParamsError(f"params.yaml: no profile {name!r}; defined profiles: {', '.join(self.profiles)}")
        return self.profiles[name]

    def profile_name(self, name: str | None = None) -> str:
        """``name`` checked, or the pipeline's profile (``train.profile``)."""
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


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings class that holds the key at ``loc`` (for naming the keys it knows)."""
    current: Any = Settings
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


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        holder = _model_at(loc)
        known = list(holder.model_fields) if holder else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{dotted}: unknown key{hint} (known here: {', '.join(known)})"
    if error["type"] == "missing":
        return f"{dotted}: missing"
    where = f"{dotted}: " if dotted else ""
    if error["type"] == "value_error":  # a rule across keys: its message names them
        return where + str(error["ctx"]["error"])
    return f"{where}{error['msg']}, got {error.get('input')!r}"


def parse_settings(raw: dict[str, Any], source: str = "params.yaml") -> Settings:
    """Typed settings from the params tree, or a ParamsError naming each bad key in ``source``."""
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors(include_url=False)]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


def load_settings(path: Path) -> Settings:
    return parse_settings(load_params(path), str(path))


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


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the params tree ``raw`` with ``values`` (dotted keys, as ``dvc exp run -S``
    takes them) put in; every key must already exist."""
    out = copy.deepcopy(raw)
    for dotted, value in values.items():
        node, rest = out, dotted
        while True:
            # the longest key that starts the rest: profile names hold dots (qwen2.5-7b)
            key = next((k for k in sorted(node, key=len, reverse=True) if rest == k or rest.startswith(f"{k}.")), None)
            if key is None:
                raise ParamsError(f"params.yaml: no parameter {dotted!r}")
            if rest == key:
                node[key] = copy.deepcopy(value)
                break
            node, rest = node[key], rest[len(key) + 1 :]
            if not isinstance(node, dict):
                raise ParamsError(f"params.yaml: no parameter {dotted!r}")
    return out


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
