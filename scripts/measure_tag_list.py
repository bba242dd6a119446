"""Peak memory of ``modelreg versions`` against one huge tag-list page (issue 14, item 12).

Not a test: run it by hand, it prints GNU time's "Maximum resident set size".

    PYTHONPATH=src python scripts/measure_tag_list.py [TAGS]

A hostile registry (tests/helpers/hostile_registry.py) answers ``tags/list`` with one page
of TAGS tags (default 3.4 million six-hex-digit tags, about 30 MB).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers.hostile_registry import HostileRegistry, Reply

LIMIT = 240  # seconds


def huge_page(count: int) -> bytes:
    tags = [f"{i:06x}" for i in range(count)]
    return json.dumps({"name": "ml/huge", "tags": tags}, separators=(",", ":")).encode()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3_400_000
    body = huge_page(count)
    with HostileRegistry() as hostile, tempfile.TemporaryDirectory() as home:
        hostile.override(
            "/v2/ml/huge/tags/list", Reply(200, body, {"Content-Type": "application/json"})
        )
        done = subprocess.run(
            [
                "/usr/bin/time",
                "-v",
                # the peak is reached while parsing; a slow run is cut off, GNU time still
                # reports the largest RSS of the killed command
                "timeout",
                "--foreground",
                "-s",
                "KILL",
                str(LIMIT),
                sys.executable,
                "-m",
                "modelreg",
                "versions",
                f"{hostile.host}/ml/huge",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "MODELREG_HOME": home},
        )
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    print(
        f"{count} tags, {len(body) / 1e6:.1f} MB page: exit {done.returncode} "
        f"({f'cut off after {LIMIT} s' if done.returncode in (124, 137) else 'finished'}), "
        f"peak RSS {int(peak.group(1)) / 1024 if peak else -1:.0f} MiB"
    )
    for line in errors:
        print("  " + line)


if __name__ == "__main__":
    main()
