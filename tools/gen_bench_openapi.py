"""Write docs/verification/openapi.json: the OpenAPI document of Benchmark API v1, generated from the server.

Run `python tools/gen_bench_openapi.py` after changing sampan/verify/api.py or server.py; `--check` exits 1 when
the committed file differs (tests/verify/test_api_openapi.py runs the same comparison).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "verification" / "openapi.json"


def render() -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline (stable diffs)."""
    from sampan.verify.server import openapi_document

    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python tools/gen_bench_openapi.py", file=sys.stderr)
            return 1
        return 0
    from sampan.files import atomic_write_text

    atomic_write_text(OUTPUT, text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
