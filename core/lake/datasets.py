"""The datasets a lake holds, and which one a command means."""

from __future__ import annotations

from sculpt.errors import UserError
from sculpt.lake.store import Lake

DATASET_TABLES = ("pairs", "hypotheses")


def datasets(lake: Lake) -> set[str]:
    """Names of the datasets with pairs or an analysis in the lake (as stored)."""
    found: set[str] = set()
    for table in DATASET_TABLES:
        folder = lake.table_dir(table)
        if folder.exists():
            found |= {p.name.split("=", 1)[1] for p in folder.glob("dataset=*") if p.is_dir()}
    return found


def pick_dataset(lake: Lake, name: str | None) -> str:
    """NAME, or the lake's only dataset; a clear error when that is ambiguous."""
    if name:
        if not any(lake.has(table, {"dataset": name}) for table in DATASET_TABLES):
            known = ", ".join(sorted(datasets(lake))) or "none yet"
            raise UserError(
                f"dataset {name!r}: not in lake {lake.root} (datasets: {known}); "
                f"run `sculpt ingest FILE --name {name}` or pick one of those"
            )
        return name
    found = datasets(lake)
    if len(found) == 1:
        return found.pop()
    if not found:
        raise UserError(
            f"lake {lake.root}: no dataset yet — run `sculpt demo` or "
            "`sculpt ingest FILE --name NAME`, then `sculpt triage NAME`"
        )
    raise UserError(
        f"lake {lake.root}: several datasets ({', '.join(sorted(found))}); "
        "name one: `sculpt triage NAME`"
    )


def fresh_name(lake: Lake, base: str) -> str:
    """`base`, or `base-2`, `base-3`, … : a dataset name the lake doesn't hold yet (a hint
    must never suggest overwriting an audited dataset)."""
    taken = datasets(lake)
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
