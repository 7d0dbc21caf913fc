"""`allobrain-import init MANIFEST`: guess a config.yaml from the manifest and say what was guessed."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import UsageError
from .common import out


def register(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("init", help="guess a config.yaml (column mapping, encoding, dates...) from a manifest")
    i.add_argument("manifest", type=Path)
    i.add_argument("--output", type=Path, help="where to write it (default: config.yaml beside the manifest)")
    i.add_argument("--force", action="store_true", help="replace an existing file")
    i.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from ..guess import guess_config

    target = (args.output or args.manifest.parent / "config.yaml").absolute()
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists; add --force to replace it, or choose another path with --output")
    if target.suffix.lower() in (".csv", ".xlsx", ".xlsm") or target.resolve() == args.manifest.resolve():
        raise UsageError(f"--output: {target.name} would replace a manifest; give a .yaml path")
    guess = guess_config(args.manifest)
    for line in guess.lines():
        out(line)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(guess.yaml_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output: cannot write {target}: {exc.strerror or exc}") from None
    out(f"wrote {target}")
    command = f"allobrain-import validate {shlex.quote(str(args.manifest.absolute()))} --config {shlex.quote(str(target))}"
    out(f"next: check it, then run: {command}")
    return 1 if guess.missing else 0
