"""A task: what the model is taught, declared as data in a task file (``tasks/<name>.yaml``).

A task names its input fields, its labels (and the one, if any, that means "no relation"),
the prompt (system text, user template, assistant prefill, and the one-line rationale the
warm-up teaches), how an answer is parsed, its rewards by name with their weights, and,
optionally, a rule-based prior. ``params.yaml`` points at the task file (``task``); it is
read and checked once, with the settings, and every step gets this object from there: no
other module knows the labels, the prompt or the column names.

Every problem fails the load with one line naming the file and the key.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML, YAMLError

from people_relation.errors import PermanentError
from people_relation.parsing import ParsedCompletion, parse_completion
from people_relation.prompt import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    TAGS,
    THINK_CLOSE,
    THINK_OPEN,
    ChatTemplateTokenizer,
    UnsafeText,
    control_token_problem,
)

if TYPE_CHECKING:
    from collections.abc import Callable

LABEL = "label"  # the gold label's key in every row the pipeline writes
# names an input field cannot take: the keys of the rows and answer records the pipeline writes,
# and the options of the commands whose flags are the fields (apps/predict.py)
RESERVED_FIELDS = frozenset(
    {"id", "split", "line", LABEL, "row", "gold", "status", "error", "completion", "think", "answer", "reasoning",
     "format_ok", "valid", "latency_s", "input", "output", "url", "run", "model", "profile", "json", "help",
     "params_file", "result", "example"}
)  # fmt: skip
SYSTEM_FIELDS = ("labels", "label_count")  # what the system text may name: the labels joined by "、", their number
LABEL_JOINER = "、"


class TaskError(PermanentError):
    """The task file is missing or wrong; the message names the file and the key."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class InputField(_Spec):
    """One input field of a row: a column of the data files and a placeholder of the prompt."""

    occurs_in: str | None = None
    """Another input field this one's value must occur in (a name in its sentence): checked on
    every row and query, and what name-swap augmentation and masking act on."""
    title: str | None = None
    """What the demo page calls it (default: the field's name)."""


class PromptSpec(_Spec):
    """The chat the model answers: system and user messages, then an open assistant turn."""

    system: str = Field(min_length=1)
    """The system message; may name ``{labels}`` (the labels joined by "、") and ``{label_count}``."""
    user: str = Field(min_length=1)
    """The user message: a template over the input fields, ``{text}`` etc."""
    prefill: str
    """The start of the assistant's answer; it ends with ``<think>``, so the model continues its reasoning."""
    rationale: str
    """The one-line reasoning the warm-up teaches before the answer: a template over the input
    fields and ``{label}``."""


class CsvFiles(_Spec):
    train: str = Field(min_length=1)
    """File of the training rows (the validation rows are drawn from it)."""
    test: str | None = None
    """File of the published test rows; null: the test rows are drawn too (``split.strategy: stratified``)."""


class CsvData(_Spec):
    """CSV files whose header names the input fields and ``label``, in a folder (and, optionally,
    the same rows as a Hugging Face dataset)."""

    format: Literal["csv"]
    local_dir: str = Field(min_length=1)
    """Folder holding ``files``; a relative path is taken from the project root."""
    files: CsvFiles
    """The files' names inside ``local_dir``."""
    hub_id: str | None = None
    """A Hugging Face dataset with ``train`` and ``test`` splits in the same columns, read when
    params.yaml's ``data.source`` says so (``auto``: when the folder lacks the files)."""
    hub_revision: str = "main"
    """Branch, tag or commit of ``hub_id``."""
    label_column: str = Field(default=LABEL, min_length=1)
    """The column of the gold label (``label``); the pipeline's own files call it ``label``."""


class LabelFile(_Spec):
    file: str = Field(min_length=1)
    """Path of the file, inside ``local_dir`` or the installed ``package``."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of its bytes, checked when given: another file fails the stage."""


class LinesData(_Spec):
    """One file per label, one text a line (the first input field; blank lines are skipped and
    surrounding spaces dropped), in a folder or inside an installed package."""

    format: Literal["lines"]
    files: dict[str, LabelFile] = Field(min_length=1)
    """Each label's file, by label."""
    local_dir: str | None = None
    """Folder holding the files; a relative path is taken from the project root."""
    package: str | None = None
    """Or an installed distribution shipping them (pinned in the lock files)..."""
    version: str | None = None
    """... in this version: another installed version fails the stage."""
    max_chars: int | None = Field(default=None, ge=1)
    """Longer texts are left out (counted in the data report); null: every text is kept."""
    unique: bool = False
    """Leave out a line that repeats an earlier one with the same label (counted in the data
    report); the same text under two labels is kept, under both."""

    @model_validator(mode="after")
    def _one_place(self) -> LinesData:
        if (self.local_dir is None) == (self.package is None):
            raise ValueError("give one of local_dir (a folder) and package (with its version)")
        if self.package is not None and self.version is None:
            raise ValueError("data.package needs data.version: another version's files may differ")
        return self


class Published(_Spec):
    """A result published on the same test set, quoted in the comparison (not re-run here)."""

    method: str
    model: str
    weighted_f1: float = Field(ge=0, le=1)


class Task(_Spec):
    """A task file, checked: see the module docstring."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """Short name: folders, run names and the registered model carry it."""
    title: str | None = None
    """What the demo page calls the task (default: its name, capitalised)."""
    description: str = ""
    """What the model is taught, in a sentence (the demo page shows it)."""
    inputs: dict[str, InputField] = Field(min_length=1)
    """The input fields, in the order a reader gives them: each a column of the data files."""
    labels: list[str] = Field(min_length=1)
    """Every answer the model may give, in the order the prompt lists them."""
    none_label: str | None = None
    """The label that means "no relation" (the prior's answer when it finds no cue), or null."""
    prompt: PromptSpec
    """The prompt: see :class:`PromptSpec`."""
    answer: Literal["think_answer"] = "think_answer"
    """How a completion is parsed: ``think_answer``, ``<think>REASONING</think>`` then
    ``<answer>LABEL</answer>`` and nothing else (the published format)."""
    rewards: dict[str, float | None] = Field(min_length=1)
    """The GRPO rewards by name (``people_relation.rewards.REWARDS``), each with its weight."""
    prior: str | None = None
    """A rule-based prior by name (``keywords``: the relation keyword rules), or null: a
    warm-up with ``labels: prior`` teaches its answers, and the baseline scores it."""
    published: list[Published] = []
    """Results published on the same test set, quoted in the comparison report."""
    data: CsvData | LinesData = Field(discriminator="format")
    """Where the rows come from: ``csv`` files with a header, or ``lines`` files, one per label."""

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        seen: set[str] = set()
        for label in labels:
            if not label.strip() or label != label.strip():
                raise ValueError(f"label {label!r} is empty or has surrounding spaces")
            if label in seen:
                raise ValueError(f"duplicate label {label!r}")
            if any(tag in label for tag in TAGS) or control_token_problem("label", label):
                raise ValueError(f"label {label!r} holds a format tag or a control token")
            seen.add(label)
        return labels

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, inputs: dict[str, InputField]) -> dict[str, InputField]:
        for name, spec in inputs.items():
            if not name.isidentifier() or name in RESERVED_FIELDS:
                raise ValueError(
                    f"input field {name!r}: a field is a plain name, and none of {', '.join(sorted(RESERVED_FIELDS))}"
                )
            if spec.occurs_in is not None and spec.occurs_in not in inputs:
                raise ValueError(f"{name}.occurs_in names {spec.occurs_in!r}, which is not an input field")
            if spec.occurs_in == name:
                raise ValueError(f"{name}.occurs_in names the field itself")
        return inputs

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        from people_relation.priors import PRIORS
        from people_relation.rewards import REWARDS

        if self.none_label is not None and self.none_label not in self.labels:
            raise ValueError(f"none_label {self.none_label!r} is not one of the labels")
        if isinstance(self.data, CsvData) and self.data.label_column in self.inputs:
            raise ValueError(f"data.label_column {self.data.label_column!r} is an input field")
        if isinstance(self.data, LinesData):
            if len(self.inputs) != 1:
                raise ValueError(
                    f"data: lines files hold one text a line; the task has {len(self.inputs)} input fields"
                )
            unknown = sorted(set(self.data.files) - set(self.labels))
            if unknown:
                raise ValueError(f"data.files names {', '.join(map(repr, unknown))}, which are not labels")
        fields = set(self.inputs)
        for key, text, allowed in (
            ("prompt.system", self.prompt.system, set(SYSTEM_FIELDS)),
            ("prompt.user", self.prompt.user, fields),
            ("prompt.rationale", self.prompt.rationale, fields | {LABEL}),
        ):
            named = _placeholders(text, key)
            unknown = sorted(named - allowed)
            if unknown:
                raise ValueError(
                    f"{key} names {', '.join('{' + u + '}' for u in unknown)}, which the data lacks "
                    f"(it may name: {', '.join(sorted(allowed))})"
                )
        if not self.prompt.prefill.endswith(THINK_OPEN):
            raise ValueError(f"prompt.prefill must end with {THINK_OPEN!r}: the model continues its reasoning")
        for name, weight in self.rewards.items():
            if name not in REWARDS:
                close = _close(name, REWARDS)
                raise ValueError(f"rewards: no reward named {name!r}{close} (known: {', '.join(REWARDS)})")
            if weight is None:
                raise ValueError(f"rewards.{name} has no weight: give each reward a number")
        if self.prior is not None:
            if self.prior not in PRIORS:
                raise ValueError(
                    f"prior: no prior named {self.prior!r}{_close(self.prior, PRIORS)} (known: {', '.join(PRIORS)})"
                )
            problem = PRIORS[self.prior].problem(self)
            if problem:
                raise ValueError(f"prior {self.prior!r}: {problem}")
        return self

    # -- labels --------------------------------------------------------------------------------

    @cached_property
    def label_set(self) -> frozenset[str]:
        return frozenset(self.labels)

    def is_label(self, value: str | None) -> bool:
        """True when ``value`` is exactly one of the labels (no normalisation)."""
        return value is not None and value in self.label_set

    def label_problem(self, value: object) -> str | None:
        """Why ``value`` cannot be a gold label, or None."""
        if isinstance(value, str) and self.is_label(value):
            return None
        return f"label {value!r} is not one of the {len(self.labels)} labels ({', '.join(self.labels)})"

    # -- inputs --------------------------------------------------------------------------------

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    @property
    def label_column(self) -> str:
        """The gold label's column in the task's CSV files (``label`` unless its data says)."""
        return getattr(self.data, "label_column", LABEL)

    @property
    def display_title(self) -> str:
        return self.title or self.name.capitalize()

    def field_title(self, field: str) -> str:
        return self.inputs[field].title or field

    @property
    def mentions(self) -> dict[str, str]:
        """Fields whose value occurs in another field: ``{name field: text field}``."""
        return {f: s.occurs_in for f, s in self.inputs.items() if s.occurs_in is not None}

    def input_problems(self, values: Mapping[str, object], where: str = "") -> list[str]:
        """What is wrong with one row's input fields (empty, a name not in its text, a control token)."""
        problems = []
        for field in self.inputs:
            value = values.get(field)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where}{field} is empty")
        if problems:
            return problems
        for field, holder in self.mentions.items():
            if str(values[field]) not in str(values[holder]):
                problems.append(f"{where}{field} {values[field]!r} does not occur in the {holder}")
        for field in self.inputs:
            if problem := control_token_problem(f"{where}{field}", str(values[field])):
                problems.append(problem)
        return problems

    # -- the prompt ----------------------------------------------------------------------------

    @cached_property
    def system_prompt(self) -> str:
        return self.prompt.system.format(labels=LABEL_JOINER.join(self.labels), label_count=len(self.labels))

    def user_message(self, inputs: Mapping[str, str]) -> str:
        return self.prompt.user.format_map({f: inputs[f] for f in self.inputs})

    def build_messages(self, inputs: Mapping[str, str]) -> list[dict[str, str]]:
        """System, user and the prefilled assistant turn, as chat messages.

        Raises :class:`UnsafeText` when a field holds a control token: whatever reached this
        point unchecked, the prompt never carries a control token the user wrote.
        """
        problems = [m for f in self.inputs if (m := control_token_problem(f, str(inputs[f])))]
        if problems:
            raise UnsafeText("; ".join(problems))
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.user_message(inputs)},
            {"role": "assistant", "content": self.prompt.prefill},
        ]

    def render_prompt(self, tokenizer: ChatTemplateTokenizer, inputs: Mapping[str, str]) -> str:
        """The prompt string the model continues, through ``tokenizer``'s chat template; the
        assistant prefill stays open (the string ends with ``<think>``)."""
        rendered = tokenizer.apply_chat_template(
            self.build_messages(inputs), tokenize=False, continue_final_message=True
        )
        if not isinstance(rendered, str) or not rendered.endswith(self.prompt.prefill):
            raise ValueError(
                "the tokenizer's chat template did not leave the assistant prefill open: "
                f"expected the prompt to end with {self.prompt.prefill!r}, got ...{str(rendered)[-40:]!r}"
            )
        return rendered

    def target_completion(self, inputs: Mapping[str, str], label: str) -> str:
        """The completion the warm-up teaches: the rationale, then the answer. It continues the
        prefilled ``<think>`` and, with it, satisfies the format reward."""
        rationale = self.prompt.rationale.format_map({**{f: inputs[f] for f in self.inputs}, LABEL: label})
        return f"{rationale}\n{THINK_CLOSE}\n{ANSWER_OPEN}{label}{ANSWER_CLOSE}"

    def prompt_pieces(self) -> tuple[str, ...]:
        """Constant substrings of every rendered prompt (ChatML), each made a single token by
        the project's own tokenizer: the system turn, the user template's literal parts and
        the assistant header with the prefill up to ``<think>``."""
        literals = [text for text, *_ in string.Formatter().parse(self.prompt.user) if text]
        if not self.prompt.user.startswith(literals[0] if literals else "\0"):
            literals.insert(0, "")
        user = ["user\n" + literals[0], *literals[1:]] if literals else ["user\n"]
        return (
            "system\n" + self.system_prompt,
            *user,
            "assistant\n" + self.prompt.prefill[: -len(THINK_OPEN)],
        )

    def vocabulary_pieces(self) -> tuple[str, ...]:
        """What the project's tokenizer adds as single tokens: the format tags, the labels and
        the prompt's constant pieces, in this order."""
        return (*TAGS, *self.labels, *self.prompt_pieces())

    # -- answers -------------------------------------------------------------------------------

    def parse(self, completion: str) -> ParsedCompletion:
        """``completion`` parsed as continuing the prefill (see :mod:`people_relation.parsing`)."""
        return parse_completion(completion, self.label_set)

    # -- rewards and prior ---------------------------------------------------------------------

    def reward_functions(self, train_labels: Sequence[str]) -> tuple[list[Callable[..., list[float]]], list[float]]:
        """TRL's reward functions and weights, in the task's order (``train_labels``: the gold
        labels of the training prompts, for rewards that weigh by them)."""
        from people_relation.rewards import REWARDS

        functions = [REWARDS[name].build(self, train_labels) for name in self.rewards]
        return functions, [float(w) for w in self.rewards.values()]  # type: ignore[arg-type]

    @property
    def prior_title(self) -> str:
        """What the reports call the prior (``keyword rules``)."""
        from people_relation.priors import PRIORS

        return PRIORS[self.prior].name if self.prior else "no prior"

    def prior_answer(self, inputs: Mapping[str, str]) -> str:
        """The prior's answer for one row (``none_label`` when it finds no cue)."""
        from people_relation.priors import PRIORS

        if self.prior is None:
            raise ValueError(f"task {self.name} has no prior")
        answer = PRIORS[self.prior].answer(inputs)
        return answer if answer is not None else str(self.none_label)

    def prior_explanation(self, inputs: Mapping[str, str]) -> Any:
        """The prior's cue for one row (what it read, for the baseline's report), or None."""
        from people_relation.priors import PRIORS

        if self.prior is None:
            raise ValueError(f"task {self.name} has no prior")
        return PRIORS[self.prior].explain(inputs)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _placeholders(template: str, key: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as err:
        raise ValueError(f"{key}: not a valid template ({err}); write a literal brace as {{{{ or }}}}") from None


def _close(name: str, known: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_task(raw: Any, source: str) -> Task:
    """A checked task from its file's tree, or a TaskError: ``source: key: what is wrong``."""
    if not isinstance(raw, dict):
        raise TaskError(f"{source}: expected a mapping of task keys (name, inputs, labels, prompt, rewards...)")
    try:
        return Task.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "value_error":
            message = str(first["ctx"]["error"])
        elif first["type"] == "extra_forbidden":
            message = f"unknown key{_close(str(first['loc'][-1]), _known_at(first['loc']))}"
        elif first["type"] == "missing":
            message = "missing"
        else:
            message = f"{first['msg']}, got {first.get('input')!r}"
        raise TaskError(f"{source}: {loc + ': ' if loc else ''}{message}") from None


def _known_at(loc: tuple[Any, ...]) -> dict[str, Any]:
    holders: dict[str, type[_Spec]] = {"prompt": PromptSpec, "published": Published, "data": CsvData}
    model: type[_Spec] = Task
    if len(loc) >= 2 and loc[0] in holders and not (loc[0] == "published" and len(loc) < 3):
        model = holders[str(loc[0])]
    elif len(loc) >= 3 and loc[0] == "inputs":
        model = InputField
    return dict(model.model_fields)


def load_task(path: Path, shown: str | None = None) -> Task:
    """The task in ``path`` (YAML), checked; errors name ``shown`` (default: the path)."""
    source = shown or str(path)
    try:
        with path.open(encoding="utf-8") as fh:
            raw = YAML(typ="safe").load(fh)
    except FileNotFoundError:
        raise TaskError(f"{source}: no such task file; runs.<run>.task in params.yaml names it") from None
    except YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise TaskError(f"{source}: {line}not valid YAML ({getattr(err, 'problem', None) or err})") from None
    return parse_task(raw, source)
