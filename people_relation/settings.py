"""The shape of ``params.yaml``: every section and profile as typed, frozen settings.

``load_settings`` reads the file once and checks all of it before any work starts: an
unknown key (a typo), a value of the wrong type and a value out of range each fail with
the file, the dotted key and what is allowed. The file keeps its shape, so ``dvc exp run
-S key=value`` and DVC's params tracking work as before.
"""

from __future__ import annotations

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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- the pipeline's sections ---------------------------------------------------------------


class DataFiles(Section):
    train: Path_
    test: Path_


class Data(Section):
    source: Literal["auto", "local", "hub"]
    local_dir: Path_
    hub_id: str
    hub_revision: str
    files: DataFiles
    prepared_dir: Path_


class Split(Section):
    strategy: Literal["published", "stratified"]
    test_fraction: typing.Annotated[float, Field(gt=0, lt=1)]
    validation_fraction: typing.Annotated[float, Field(ge=0, lt=1)]
    seed: Count
    out_dir: Path_


class Reports(Section):
    data_dir: Path_
    split_dir: Path_
    chart_dpi: PositiveInt


class Tracking(Section):
    uri: str
    artifact_dir: Path_
    experiment: str
    registered_model: str


class Train(Section):
    profile: str
    models_dir: Path_
    checkpoints_dir: Path_
    reports_dir: Path_
    reward_window: PositiveInt


class Serve(Section):
    model: Literal["base", "warmup", "grpo"]
    host: str
    port: Port
    served_model_name: str
    api_key_env: str
    startup_timeout_s: Positive
    stop_timeout_s: Positive
    cache_dir: Path_
    reports_dir: Path_
    smoke_rows: Count


class Evaluate(Section):
    split: Literal["test", "validation"]
    max_rows: PositiveInt | None
    concurrency: PositiveInt
    request_timeout_s: Positive
    max_retries: Count
    answer_retries: Count
    state_dir: Path_
    reports_dir: Path_
    metrics_dir: Path_


class Baseline(Section):
    ngram_min: PositiveInt
    ngram_max: PositiveInt
    C: Positive
    mask_names: bool
    reports_dir: Path_

    @model_validator(mode="after")
    def _ngrams(self) -> Baseline:
        if self.ngram_max < self.ngram_min:
            raise ValueError(f"ngram_max ({self.ngram_max}) must be at least ngram_min ({self.ngram_min})")
        return self


class Report(Section):
    dir: Path_
    error_samples: Count
    seed: int


class Pipeline(Section):
    retries: dict[Literal["prepare", "split", "train", "baseline", "serve", "evaluate", "report"], Count]
    retry_delay_s: NonNegative


class Predict(Section):
    max_chars: PositiveInt


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
    labels: Literal["gold", "random"] | None = None

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
    label_reward: Literal["published", "balanced"]
    bf16: bool
    use_cpu: bool
    gradient_checkpointing: bool
    logging_steps: PositiveInt
    save_steps: PositiveInt
    save_total_limit: PositiveInt
    completions_every: PositiveInt
    seed: int
    vllm_mode: Literal["off", "server", "colocate"]
    vllm_importance_sampling_correction: bool
    prompt_sampling: Literal["natural", "balanced"]
    eval_steps: PositiveInt
    eval_rows: PositiveInt | None
    eval_prompts_per_device: PositiveInt
    num_generations_eval: PositiveInt
    publish: Literal["best", "last"]
    best_metric: Literal["weighted_f1", "macro_f1", "accuracy"]


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
    kv_cache_gib: Positive | None = None
    reserved_cpus: PositiveInt | None = None
    gpu_memory_utilization: typing.Annotated[float, Field(gt=0, le=1)] | None = None
    gpus: list[Count] | None = None


class Validation(Section):
    engine: Literal["transformers", "vllm"]
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
    action: Literal["stop", "warn", "off"]
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
    evaluate_models: list[Literal["base", "warmup", "grpo"]] = Field(min_length=1)
    register_model: bool


# -- the rehearsal of a GPU profile on this CPU ----------------------------------------------


class StandIn(Arch):
    seed: int


class Rehearsal(Section):
    profile: str
    dir: Path_
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
    rehearsal: Rehearsal
    profiles: dict[str, Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _profiles_named(self) -> Settings:
        for key, name in (("train.profile", self.train.profile), ("rehearsal.profile", self.rehearsal.profile)):
            if name not in self.profiles:
                raise ValueError(f"{key} is {name!r}; the profiles are {', '.join(self.profiles)}")
        return self


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
