"""The serving errors a command reports in one message, with the exit status that says a
retry may help (see ``flows/cli.py``)."""


class ServerError(RuntimeError):
    """The server could not start or stopped answering; the message carries its log's tail."""


class EvaluationInterrupted(RuntimeError):
    """Some rows could not be answered; the finished ones are saved and a re-run resumes."""
