"""What changed between two pushed models: lineage part by part, packages, files.

Pure comparison over what :mod:`modelreg._model_reading` reads; the facade's
:func:`~modelreg.api.diff` opens the two references and hands their sides here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._model_reading import freeze_list, model_files

if TYPE_CHECKING:
    from .lineage import Lineage
    from .oci import Manifest
    from .store.base import Repository

Side = tuple["Repository", "Manifest", "Lineage"]


def model_changes(first: Side, second: Side) -> dict[str, list[dict[str, Any]]]:
    """Changes from ``first`` to ``second``, grouped by lineage part, plus ``files``."""
    from . import lineage as lineage_mod

    (repo_a, manifest_a, lineage_a), (repo_b, manifest_b, lineage_b) = first, second
    grouped = lineage_mod.diff_lineage(lineage_a, lineage_b)
    out: dict[str, list[dict[str, Any]]] = {
        group: [_change(c.path, c.before, c.after) for c in changes]
        for group, changes in grouped.items()
    }
    packages = [freeze_list(*first), freeze_list(*second)]
    out["environment"].extend(
        _change(f"packages.{name}", packages[0].get(name), packages[1].get(name))
        for name in sorted(set(packages[0]) | set(packages[1]))
        if packages[0].get(name) != packages[1].get(name)
    )
    files_a, files_b = model_files(manifest_a), model_files(manifest_b)
    changed = [n for n in sorted(set(files_a) | set(files_b)) if files_a.get(n) != files_b.get(n)]
    from .file_sizes import file_sizes

    sizes_a = file_sizes(repo_a, manifest_a, [n for n in changed if n in files_a])
    sizes_b = file_sizes(repo_b, manifest_b, [n for n in changed if n in files_b])
    out["files"] = [
        {
            **_change(name, files_a.get(name), files_b.get(name)),
            "sizeBefore": sizes_a.get(name),
            "sizeAfter": sizes_b.get(name),
        }
        for name in changed
    ]
    return out


def _change(path: str, before: Any, after: Any) -> dict[str, Any]:
    from . import lineage as lineage_mod

    def plain(value: Any) -> Any:
        return None if value is lineage_mod.MISSING else value

    return {"path": path, "before": plain(before), "after": plain(after)}
