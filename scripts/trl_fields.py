"""Write people_relation/grpo_fields.json: every field of the locked TRL's ``GRPOConfig``, its
kind, default and help, so that params.yaml's GRPO settings are checked against TRL's own
fields without importing TRL (seconds) in every command.

    python scripts/trl_fields.py          # after a TRL upgrade in the lock files

``tests/test_recipe.py`` fails while the file differs from the installed TRL.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "people_relation" / "grpo_fields.json"
SIMPLE = {"bool", "int", "float", "str", "None"}


def kinds(annotation: Any) -> list[str]:
    """The field's type as simple kinds (``["float", "None"]``), or ``["any"]`` for anything else."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = str(annotation).replace("<class '", "").replace("'>", "") if not isinstance(annotation, str) else text
    parts = [p.strip() for p in text.replace("typing.Optional[", "").rstrip("]").split("|")]
    return sorted(parts) if all(p in SIMPLE for p in parts) else ["any"]


def default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def snapshot() -> dict[str, Any]:
    import trl
    from trl import GRPOConfig

    fields = {
        f.name: {
            "kinds": kinds(f.type),
            "default": default(f),
            "help": " ".join(str(f.metadata.get("help", "")).split()),
        }  # noqa: E501
        for f in dataclasses.fields(GRPOConfig)
        if f.init and not f.name.startswith("_")
    }
    return {"trl": trl.__version__, "fields": dict(sorted(fields.items()))}


def main() -> int:
    OUT.write_text(json.dumps(snapshot(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
