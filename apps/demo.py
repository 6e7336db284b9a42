"""demo: a web page that asks the served model about one query and shows its answer.

    python -m apps.demo [--url http://HOST:PORT/v1] [--params-file FILE] [--run RUN] [--port PORT]

The form holds the task's input fields (for the relation task: a Chinese sentence and the two
people, both of whom must occur in it); or click one of the examples from the validation
split. The page shows the label the model answers, its reasoning, the raw completion when
there is no valid answer, and the names (the task's mention fields) highlighted in the
sentence. A query that ``predict`` would refuse (a name not in the sentence, an over-long
sentence, chat-template control tokens) is refused on the page, with the reason, and
nothing is sent.

With ``--url`` the page asks a server that is already running (``make serve``; the API key
from the ``serve.api_key_env`` variable when the server needs one); without, it starts a
vLLM server on ``serve.model`` of the run's profile and stops it when the page stops
(Ctrl-C). Where the page listens and which examples it offers: ``demo`` in params.yaml.

The page is a Streamlit app (Gradio needs older pillow and tomlkit than the lock holds).
Streamlit runs this same file as the page's script, once per interaction, in the process
that ``main`` started: :func:`page` is that script.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from apps.endpoint import endpoint, failed
from apps.settings import DemoSettings, demo_settings
from people_relation.dataset import Example
from people_relation.errors import EXIT_OK, ServerError
from people_relation.highlight import highlighted_html, name_spans
from people_relation.infra.data import read_examples
from people_relation.infra.io import read_settings
from people_relation.infra.paths import resolve_arm, split_file
from people_relation.prompt import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from people_relation.query import QueryError, make_query
from people_relation.serving.client import ask, make_client
from people_relation.settings import Settings
from people_relation.task import Task

NO_ANSWER = "(no valid answer)"
FORMAT = f"{THINK_OPEN}…{THINK_CLOSE}\\n{ANSWER_OPEN}label{ANSWER_CLOSE}"
# what the page keeps between interactions (Streamlit's session state): the task's input
# fields under their own names, and these
RESULT, EXAMPLE = "result", "example"
# ASCII punctuation Markdown (and Streamlit's LaTeX) may read; a backslash makes each literal
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$&:])")
# Streamlit as a demo server, not a development one: no browser opened and no e-mail
# prompt (headless), no usage statistics, no re-runs when files change, no developer menu.
STREAMLIT_OPTIONS: dict[str, Any] = {
    "server.headless": True,
    "server.fileWatcherType": "none",
    "server.runOnSave": False,
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "viewer",
    "global.developmentMode": False,
}
STYLE = """<style>
mark.person1 { background: #ffd966; padding: 0 0.15em; border-radius: 0.2em; }
mark.person2 { background: #9fd3ff; padding: 0 0.15em; border-radius: 0.2em; }
.sentence { font-size: 1.25rem; line-height: 2; }
.relation { font-size: 1.5rem; margin: 0.5rem 0; }
.relation-label { font-weight: 700; }
.no-answer .relation-label { color: #b3261e; }
.reasoning { white-space: pre-wrap; }
div[class*="st-key-example-"] button, div[class*="st-key-example-"] button > div { justify-content: flex-start; }
div[class*="st-key-example-"] button p { text-align: left; }
</style>"""


# -- what the page shows: pure functions ------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The model's answer to one query. ``label`` is set only when the completion holds the
    expected format and its answer is one of the labels (as ``predict`` counts it)."""

    query: Example
    label: str | None
    answer: str | None  # what the model put in <answer>, label or not
    reasoning: str | None
    format_ok: bool
    completion: str
    latency_s: float


@dataclass(frozen=True)
class Problem:
    """No answer to show: the query was refused before sending (``sent`` False), or the
    server did not answer."""

    message: str
    sent: bool


def answer_of(task: Task, query: Example, completion: str, latency_s: float) -> Answer:
    parsed = task.parse(completion)
    return Answer(
        query=query,
        label=parsed.label,
        answer=parsed.answer,
        reasoning=parsed.think,
        format_ok=parsed.format_ok,
        completion=completion,
        latency_s=latency_s,
    )


def why_no_label(task: Task, answer: Answer) -> str:
    """Why ``answer`` has no valid label, in words a user can act on."""
    if answer.format_ok:
        return f"the model answered {answer.answer!r}, which is not one of the {len(task.labels)} labels"
    if answer.answer is not None:
        return f"the model answered {answer.answer!r}, but the completion does not follow the format {FORMAT}"
    return f"the completion does not follow the format {FORMAT}: no answer could be read from it"


def pick_examples(rows: Sequence[Example], n: int) -> list[Example]:
    """``n`` rows: the first row of each label (in file order), then the next rows in file
    order, so a few examples already show different labels."""
    first: list[Example] = []
    rest: list[Example] = []
    seen: set[str] = set()
    for row in rows:
        (rest if row.label in seen else first).append(row)
        seen.add(row.label)
    return (first + rest)[:n]


def example_caption(task: Task, example: Example, preview_chars: int) -> str:
    """A button's text: the names (the mention fields), the start of the text (the first
    input field) and the gold label."""
    first = example.key[0]
    text = first if len(first) <= preview_chars else first[:preview_chars] + "…"
    names = " / ".join(example[f] for f in task.mentions)
    return f"{names + ': ' if names else ''}{text} ({example.label})"


def markdown_text(text: str) -> str:
    """``text`` shown as it is where Streamlit reads Markdown (messages, button captions):
    a name, a sentence or a completion holding ``*``, ``<|im_end|>`` or ``$`` is user or
    model text, not formatting, HTML or LaTeX."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def same_query(example: Example | None, query: Example) -> bool:
    """``query`` asks exactly what ``example`` holds (so its gold label applies)."""
    return example is not None and example.inputs == query.inputs


def streamlit_options(host: str, port: int) -> dict[str, Any]:
    """Streamlit's settings for the page at ``host:port``; the address is given to the
    browser side too, so Streamlit never looks up this machine's external address."""
    return STREAMLIT_OPTIONS | {
        "server.address": host,
        "server.port": port,
        "browser.serverAddress": host,
        "browser.serverPort": port,
    }


# -- asking the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class PageContext:
    """What every interaction of the page needs, read once."""

    settings: Settings
    demo: DemoSettings
    url: str
    model: str
    api_key: str | None
    examples: list[Example]


def load_examples(settings: Settings, demo: DemoSettings) -> list[Example]:
    """The examples the page offers (a DataError naming the stage to run when the split is missing)."""
    if not demo.examples:
        return []
    return pick_examples(read_examples(split_file(settings.split, demo.examples_split)), demo.examples)


def page_context(params_file: str, url: str, model: str, run: str | None = None) -> PageContext:
    settings = read_settings(params_file, run)
    demo = demo_settings(settings, params_file)
    return PageContext(
        settings=settings,
        demo=demo,
        url=url,
        model=model,
        api_key=os.environ.get(settings.serve.api_key_env) or None,
        examples=load_examples(settings, demo),
    )


async def _ask(ctx: PageContext, query: Example) -> tuple[str, float]:
    settings = ctx.settings
    sampling = resolve_arm(settings).profile.serve.sampling()
    client = make_client(ctx.url, ctx.api_key, settings.evaluate.client())
    try:
        return await ask(client, settings.task, query, ctx.model, sampling)
    finally:
        await client.close()


def outcome(ctx: PageContext, inputs: dict[str, str]) -> Answer | Problem:
    """The model's answer to the query (a value for each input field), or why there is none."""
    try:
        query = make_query(ctx.settings.task, inputs, ctx.settings.query.max_chars)
    except QueryError as err:
        return Problem(f"Not sent to the model: {err}.", sent=False)
    try:
        completion, latency = asyncio.run(_ask(ctx, query))
    except openai.APIError as err:
        return Problem(
            f"No answer from the model server at {ctx.url} ({type(err).__name__}: {err}). Check that it is "
            "running (`make serve`), or start the demo without --url to start one.",
            sent=True,
        )
    return answer_of(ctx.settings.task, query, completion, latency)


# -- the page (Streamlit's script) ------------------------------------------------------------


def _page_arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apps/demo.py (the page)")
    parser.add_argument("--params-file", required=True)
    parser.add_argument("--run", default=None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    return parser


def _fill(example: Example) -> None:
    """An example was clicked: it fills the form (before the form is drawn again)."""
    import streamlit as st

    st.session_state.update(example.inputs)
    st.session_state[EXAMPLE] = example
    st.session_state.pop(RESULT, None)


def _show(st: Any, task: Task, result: Answer | Problem, example: Example | None, split: str) -> None:
    """The answer (or the problem) under the form; ``example`` is the last one clicked, from ``split``."""
    if isinstance(result, Problem):
        st.error(markdown_text(result.message))
        return
    q = result.query
    mentions = list(task.mentions)
    text = task.mentions[mentions[0]] if mentions else task.fields[0]
    named = [f for f in mentions if task.mentions[f] == text]
    sentence = highlighted_html(q[text], name_spans(q[text], [q[f] for f in named]))
    legend = " · ".join(
        f'<mark class="person{i}">{html.escape(q[f])}</mark> {html.escape(task.field_title(f).lower())}'
        for i, f in enumerate(named, start=1)
    )
    st.markdown(f'<div class="sentence">{sentence}</div><div>{legend}</div>', unsafe_allow_html=True)
    shown = html.escape(result.label or NO_ANSWER)
    kind = "relation" if result.label else "relation no-answer"
    st.markdown(
        f'<div class="{kind}">{html.escape(task.name.capitalize())}: <span class="relation-label">{shown}</span></div>',
        unsafe_allow_html=True,
    )
    if result.label is None:
        st.warning(markdown_text(f"No valid answer: {why_no_label(task, result)}. The raw completion is below."))
    if same_query(example, q):
        verdict = "right" if result.label == example.label else "wrong"
        st.caption(f"Gold label {example.label} ({split} split, row {example.id}): the model is {verdict}.")
    if result.reasoning is not None:
        st.markdown("**Reasoning**")
        st.markdown(f'<div class="reasoning">{html.escape(result.reasoning)}</div>', unsafe_allow_html=True)
    with st.expander("Raw completion", expanded=result.label is None):
        st.code(result.completion or "(empty)", language=None, wrap_lines=True)
    st.caption(f"Answered in {result.latency_s:.2f} s.")


def page(argv: list[str]) -> None:
    """The page, drawn again by Streamlit on every interaction."""
    import streamlit as st

    args = _page_arguments().parse_args(argv)
    ctx = st.cache_resource(show_spinner=False)(page_context)(args.params_file, args.url, args.model, args.run)
    task = ctx.settings.task
    st.set_page_config(page_title=task.display_title, layout="centered")
    st.markdown(STYLE, unsafe_allow_html=True)
    st.title(task.display_title)
    st.caption(f"{task.description} Model {ctx.model!r} at {ctx.url}.".strip())
    if ctx.examples:
        st.markdown(f"**Examples** from the {ctx.demo.examples_split} split (gold label in brackets)")
        for i, example in enumerate(ctx.examples):
            caption = markdown_text(example_caption(task, example, ctx.demo.preview_chars))
            st.button(caption, key=f"example-{i}", on_click=_fill, args=(example,), width="stretch")
    with st.form("query"):
        first, *rest = task.fields
        st.text_area(task.field_title(first), key=first)
        for column, field in zip(st.columns(len(rest)) if rest else [], rest, strict=True):
            column.text_input(task.field_title(field), key=field)
        asked = st.form_submit_button(f"Predict the {task.name}", type="primary")
    if asked:
        with st.spinner("Asking the model…"):
            st.session_state[RESULT] = outcome(ctx, {f: st.session_state.get(f, "") for f in task.fields})
    if RESULT in st.session_state:
        _show(st, task, st.session_state[RESULT], st.session_state.get(EXAMPLE), ctx.demo.examples_split)


# -- the command ----------------------------------------------------------------------------


def page_port(host: str, port: int) -> int:
    """``port`` if the page can listen on it (0: one the system picks), else a ServerError.

    Checked as the page's server binds (``SO_REUSEADDR``), so a page restarted at once is not
    refused for the connections of the one before, still in TIME_WAIT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except (OSError, OverflowError) as err:  # in use, not an address here; out of range
            reason = getattr(err, "strerror", None) or err
            raise ServerError(
                f"the demo page cannot listen on {host}:{port} ({reason}); give another port with --port, "
                "or set demo.port in params.yaml (0: any free port)"
            ) from err
        return sock.getsockname()[1]


def serve_page(host: str, port: int, page_argv: list[str]) -> None:
    """Run the page at ``host:port`` until Ctrl-C or SIGTERM (Streamlit's own handlers)."""
    from streamlit.web import bootstrap

    options = streamlit_options(host, port)
    bootstrap.load_config_options(options)
    bootstrap.run(os.path.abspath(__file__), False, page_argv, options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="a running server's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--params-file", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--run", default=None, help="the run whose task and model the page asks (default: the first)")
    parser.add_argument("--port", type=int, default=None, help="the page's port (default: demo.port)")
    args = parser.parse_args(argv)
    try:
        settings = read_settings(args.params_file, args.run)
        demo = demo_settings(settings, args.params_file)
        load_examples(settings, demo)  # a missing split fails here, not on the page
        port = page_port(demo.host, demo.port if args.port is None else args.port)
        with endpoint(settings, args.url) as at:
            print(
                f"Demo page at http://{demo.host}:{port} asking {at.model!r} at {at.base_url}; Ctrl-C stops it.",
                flush=True,
            )
            page_argv = ["--params-file", args.params_file, "--url", at.base_url, "--model", at.model]
            serve_page(demo.host, port, page_argv + (["--run", args.run] if args.run else []))
    except Exception as err:
        return failed(err)
    return EXIT_OK


def _inside_streamlit() -> bool:
    from streamlit import runtime

    return runtime.exists()


if __name__ == "__main__":
    if _inside_streamlit():
        page(sys.argv[1:])
    else:
        sys.exit(main())
