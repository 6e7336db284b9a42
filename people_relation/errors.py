"""The errors a command reports in one message, and the exit status each one ends it with.

Every command of the project (the step flows, ``predict``, the demo page) keeps one contract,
so a script, the Prefect pipeline flow or a user can tell what to do next from the status:

====  ==========================================================================
0     done
1     bad params or data (:class:`PermanentError`): fix what the message names;
      running it again cannot help
2     the user's query or file refused before any model saw it (:class:`RefusedInput`)
3     the model answered, but not with one of the labels (``predict`` only)
75    a server did not start or stopped answering, or rows are still unanswered
      (:class:`TransientError`; EX_TEMPFAIL): run it again, finished work is kept
====  ==========================================================================

Anything else keeps its full traceback (status 1 from Python itself).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PERMANENT = 1
EXIT_REFUSED = 2
EXIT_NO_LABEL = 3
EXIT_TRANSIENT = 75


class PermanentError(ValueError):
    """Bad params or data; the message says what is wrong, where, and how to fix it."""


class RefusedInput(ValueError):
    """A query or an input file refused before any model is involved; the message says why."""


class TransientError(RuntimeError):
    """A failure that may pass when tried again; finished work is kept and a re-run resumes."""


class ServerError(TransientError):
    """The server could not start or stopped answering; the message carries its log's tail."""


class EvaluationInterrupted(TransientError):
    """Some rows could not be answered; the finished ones are saved and a re-run resumes."""


def exit_status(err: BaseException) -> int | None:
    """The status a command ends with for ``err``; None for an error that is not one of
    ours (a bug: the caller lets its traceback show)."""
    if isinstance(err, TransientError):
        return EXIT_TRANSIENT
    if isinstance(err, RefusedInput):
        return EXIT_REFUSED
    if isinstance(err, PermanentError):
        return EXIT_PERMANENT
    return None
