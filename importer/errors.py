"""The project's exceptions.

    ImportToolError                 base: every failure the CLI turns into one clear line
    ├── UsageError                  bad flag, missing API key, refused URL          -> exit 2
    │   └── ledger.LedgerUnavailable  the shared ledger stopped answering (mid-run: the run stops)
    ├── ConfigError                 config.yaml unreadable, unknown key, bad value  -> exit 2
    ├── ManifestError               manifest unreadable or unusable as a whole      -> exit 2
    ├── NetworkSetupError           a TLS or proxy failure before any call was sent -> exit 2
    ├── SourceError                 a recordings store unusable as a whole (missing extra,
    │                               no credentials, unreachable, unknown SSH host key) -> exit 2
    └── AuthError                   the API refused the key (401/403)               -> exit 3

Row-level problems are not exceptions: they are values (`manifest.Problem`) and row outcomes.
"""

from __future__ import annotations


class ImportToolError(Exception):
    """Base class: the message says what is wrong and what to change."""

    exit_code = 2


class UsageError(ImportToolError):
    """The command line or the environment is wrong (a flag, the API key variable, a refused URL)."""


class ConfigError(ImportToolError):
    """config.yaml cannot be read, or a key is unknown or has a bad value; the message names the key."""


class ManifestError(ImportToolError):
    """The manifest as a whole cannot be used (unreadable, undecidable encoding or delimiter, missing column)."""


class NetworkSetupError(ImportToolError):
    """The way to a host is blocked for a reason no retry changes: its certificate is not trusted, expired or
    for another name, the TLS handshake fails, or the proxy refuses. Raised before any call is sent; the
    message names the host (or the proxy), the reason and the setting that fixes it."""

    def __init__(self, problem: object) -> None:
        super().__init__(getattr(problem, "line", str(problem)))
        self.problem = problem
class SourceError(ImportToolError):
    """Where the recordings live cannot be used at all (an S3 bucket, an SFTP server, an https host): one
    error for the whole manifest, naming the fix, instead of one per row."""


class AuthError(ImportToolError):
    """The API answered 401 or 403: the key is wrong or lacks rights. The run stops."""

    exit_code = 3
