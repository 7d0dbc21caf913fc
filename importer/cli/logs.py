"""The request log (-v, --log-file), with the key and proxy credentials redacted everywhere, tracebacks included."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import UsageError
from ..safety import redact


class _RedactKey(logging.Filter):
    def __init__(self, key: str, *others: str) -> None:
        super().__init__()
        self.secrets = (key, *others)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = redact(text, secret)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.getMessage())
        record.args = ()
        if record.exc_info:  # tracebacks too: render it here, redacted, so no handler renders it raw
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _RedactingFormatter(logging.Formatter):
    """Redacts the finished line too: a handler that replaces ours (tqdm's logging redirect keeps the
    formatter, not the filters) still never shows the key."""

    def __init__(self, fmt: str, key: str) -> None:
        super().__init__(fmt)
        self.key = key

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.key)


def setup_logging(args: argparse.Namespace, api_key: str) -> None:
    from ..network import proxy_secrets  # imported here: it loads requests, which --version does not need

    secrets = proxy_secrets()
    logger = logging.getLogger("importer")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    fmt = _RedactingFormatter("%(asctime)s %(levelname)s %(threadName)s %(message)s", api_key)
    handlers: list[logging.Handler] = []
    if args.verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    if args.log_file:
        try:
            args.log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot write the log file {args.log_file}: {exc.strerror or exc}") from None
    if not handlers:
        handlers.append(logging.NullHandler())
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(_RedactKey(api_key, *secrets))
        logger.addHandler(h)
