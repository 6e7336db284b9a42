"""The trained model as an MLflow pyfunc that answers with its task's prompt, logged and registered.

The task (its file, checked) travels in the version's ``model_config``: the registered model
needs nothing of this project's files. ``mlflow.pyfunc.load_model("models:/people-relation-cpu@champion")
.predict(df)`` takes a DataFrame with the task's input fields (``text``, ``people1``, ``people2``
for the relation task) and returns, row for row, the completion, the reasoning, the answer and
whether the format held, generated greedily with the task's prompt (our tokenizer loader, not
AutoTokenizer, which would garble the CPU model's vocabulary), and an ``error``: a row that
fails the checks of :func:`people_relation.query.make_query` (empty, too long, a name not in the
sentence, chat-template control tokens, not a string) is not shown to the model and carries the
reason instead. The same holds behind ``mlflow models serve``, where a
request missing a column is refused whole with HTTP 400.

Registry names, tags and the ``champion`` alias: :mod:`people_relation.infra.registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow

from people_relation.infra.registry import locked_requirements

if TYPE_CHECKING:  # annotations only: predict() imports what it needs when it runs
    import pandas as pd

    from people_relation.dataset import Example
    from people_relation.task import Task

OUTPUT_COLUMNS = ("completion", "think", "answer", "format_ok", "error")
# The longest sentence predict() accepts when the version's model_config does not say
# (versions registered before max_chars was recorded); params.yaml's query.max_chars.
DEFAULT_MAX_CHARS = 256


class TaskModel(mlflow.pyfunc.PythonModel):
    """Answers a table of queries (the task's input fields), one output row per input row.

    Served by ``mlflow models serve``, so the input comes from any client: every row is
    checked with :func:`make_query` first, and a bad row is answered with its ``error``
    instead of reaching the model (or failing the rows beside it).
    """

    def load_context(self, context: Any) -> None:
        from people_relation.task import Task
        from people_relation.training.models import load_causal_lm, load_model_tokenizer

        folder = Path(context.artifacts["model"])
        config = context.model_config or {}
        self.task = Task.model_validate(config["task"])
        self.model = load_causal_lm(folder)
        self.tokenizer = load_model_tokenizer(folder, config.get("tokenizer", "project"))
        self.max_new_tokens = int(config.get("max_new_tokens", 48))
        self.batch_size = int(config.get("batch_size", 16))
        self.max_chars = int(config.get("max_chars", DEFAULT_MAX_CHARS))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        """Completions for the valid rows; ``error`` (and nothing else) for the refused ones."""
        from people_relation.training.generation import generate_completions

        queries = checked_queries(self.task, input_frame(self.task, model_input), self.max_chars)
        valid = [q for q in queries if not isinstance(q, str)]
        completions = (
            generate_completions(self.task, self.model, self.tokenizer, valid, self.max_new_tokens, self.batch_size)
            if valid
            else []
        )
        return output_frame(self.task, queries, completions)


def invalid_request(message: str) -> mlflow.exceptions.MlflowException:
    """An error for the whole request; ``mlflow models serve`` answers it with HTTP 400."""
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return mlflow.exceptions.MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def input_frame(task: Task, model_input: Any) -> pd.DataFrame:
    """``model_input`` as a DataFrame holding every input column, or a 400 saying what is missing."""
    import json

    import pandas as pd

    columns = list(task.fields)
    try:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    except (TypeError, ValueError) as err:
        raise invalid_request(
            f"predict needs a table with the columns {columns}, one row per query; "
            f"got {type(model_input).__name__} ({err})"
        ) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        example = json.dumps(dict.fromkeys(columns, "..."), ensure_ascii=False)
        raise invalid_request(
            f"predict needs the columns {columns}; missing {missing}: send every row with each of them, e.g. {example}"
        )
    return frame


def cell_problem(column: str, value: Any) -> str | None:
    """Why a cell cannot be a query field (missing, or not a string), or None when it is a string."""
    import pandas as pd

    if isinstance(value, str):
        return None
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return f"{column} is missing; give it as a string"
    return f"{column} must be a string, not {type(value).__name__}"


def checked_queries(task: Task, frame: pd.DataFrame, max_chars: int) -> list[Example | str]:
    """Per row, the validated query or the message saying why it was refused."""
    from people_relation.query import QueryError, make_query

    columns = list(task.fields)
    out: list[Example | str] = []
    for row in frame[columns].itertuples(index=False):
        problems = [p for c, v in zip(columns, row, strict=True) if (p := cell_problem(c, v))]
        if problems:
            out.append("; ".join(problems))
            continue
        try:
            out.append(make_query(task, dict(zip(columns, row, strict=True)), max_chars))
        except QueryError as err:
            out.append(str(err))
    return out


def output_frame(task: Task, queries: list[Example | str], completions: list[str]) -> pd.DataFrame:
    """One output row per query: the parsed completion (``completions`` are the valid queries',
    in order) or, for a refused query, its error and nothing else."""
    import pandas as pd

    answers = iter(completions)
    rows = []
    for query in queries:
        if isinstance(query, str):
            rows.append((None, None, None, False, query))
            continue
        completion = next(answers)
        parsed = task.parse(completion)
        rows.append((completion, parsed.think, parsed.answer, parsed.format_ok, None))
    # object columns keep None as None: pandas' string columns would turn it into NaN, which the
    # scoring server writes as a bare NaN, not JSON's null
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), dtype=object).astype({"format_ok": bool})


def log_and_register(
    task: Task,
    model_dir: Path,
    name: str,
    tokenizer: str,
    max_new_tokens: int,
    tags: dict[str, str],
    metrics: dict[str, float],
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Any:
    """Log ``model_dir`` as a pyfunc model of the active run and register a new version of ``name``.

    ``max_chars`` (query.max_chars) goes into the model config: the served model refuses longer
    sentences as the project's own commands do; and so does the task, which it answers."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=TaskModel(),
        artifacts={"model": str(model_dir)},
        code_paths=[str(Path(__file__).resolve().parents[1])],  # the people_relation package
        model_config={
            "tokenizer": tokenizer,
            "max_new_tokens": max_new_tokens,
            "max_chars": max_chars,
            "task": task.to_dict(),
        },
        pip_requirements=locked_requirements(),
        registered_model_name=name,
        tags=tags,
    )
    if metrics:
        mlflow.log_metrics(metrics, model_id=info.model_id)
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    for key, value in metrics.items():
        client.set_model_version_tag(name, str(version), key, f"{value:.4f}")
    return info
