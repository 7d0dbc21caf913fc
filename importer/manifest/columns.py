"""Which manifest column plays which part: the configured fields, and the metadata columns.

Fields are found by their configured header (`columns.<field>`), trimmed and ignoring case. Every other
column (not `import_*`) is metadata, filtered by `metadata.include` / `metadata.exclude` and renamed by
`metadata.rename`; config entries that name a column the manifest lacks are warnings on the header row.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..errors import ManifestError
from .load import field_header
from .model import LoadedManifest, Problem, header_key, header_lookup

FIELDS = (
    "file_path",
    "agent_email",
    "agent_name",
    "agent_first_name",
    "agent_last_name",
    "conversation_timestamp",
    "campaign_id",
)


@dataclass(frozen=True)
class ColumnMap:
    """Which frame column plays which part."""

    fields: dict[str, str | None]  # field -> frame label (header verbatim), None when absent
    metadata: tuple[tuple[str, str], ...]  # (frame label, metadata key), in file order
    phones: frozenset[str]  # frame labels normalised to E.164
    warnings: tuple[Problem, ...]  # config entries naming columns the manifest does not have


def resolve_columns(loaded: LoadedManifest, cfg: Config) -> ColumnMap:
    """Map fields and metadata to frame columns; ManifestError when the config makes that ambiguous."""
    lookup = header_lookup(loaded.headers)
    header_row = loaded.header_row
    wanted: dict[str, str] = {}
    for field in FIELDS:
        key = header_key(field_header(cfg, field))
        for other, other_key in wanted.items():
            if other_key == key:
                raise ManifestError(
                    f"columns.{other} and columns.{field} both name the column {field_header(cfg, field)!r}; "
                    "each field needs its own column"
                )
        wanted[field] = key
    fields = {field: lookup.get(key) for field, key in wanted.items()}
    special = {label for label in fields.values() if label is not None}
    meta_cfg = cfg.metadata
    include = None if meta_cfg.include is None else {header_key(h) for h in meta_cfg.include}
    exclude = {header_key(h) for h in meta_cfg.exclude}
    rename = {header_key(h): key.strip() for h, key in meta_cfg.rename}
    warnings: list[Problem] = []

    def absent(names: tuple[str, ...] | None, option: str) -> None:
        for name in names or ():
            if header_key(name) not in lookup:
                warnings.append(
                    Problem(
                        header_row,
                        name.strip(),
                        f"{option} names this column, but the manifest has none",
                        "warning",
                    )
                )

    absent(meta_cfg.include, "metadata.include")
    absent(tuple(h for h, _ in meta_cfg.rename), "metadata.rename")
    absent(meta_cfg.phone_columns, "metadata.phone_columns")
    metadata: list[tuple[str, str]] = []
    for label in loaded.headers:
        key = header_key(label)
        if label in special or key in exclude or (include is not None and key not in include):
            continue
        metadata.append((label, rename.get(key, label.strip())))
    seen: dict[str, str] = {}
    for label, key in metadata:
        if not key:
            raise ManifestError(f"metadata.rename gives the column {label.strip()!r} an empty metadata key")
        if key in seen:
            raise ManifestError(
                f"the columns {seen[key].strip()!r} and {label.strip()!r} would both send the metadata key "
                f"{key!r}; change metadata.rename or exclude one (metadata.exclude)"
            )
        seen[key] = label
    phone_keys = {header_key(h) for h in meta_cfg.phone_columns}
    phones = frozenset(label for label, _ in metadata if header_key(label) in phone_keys)
    return ColumnMap(fields, tuple(metadata), phones, tuple(warnings))
