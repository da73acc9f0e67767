"""Take the bundle out of a result-bundle issue's body (the issue form's ```json block).

Reads the body from the BODY environment variable (never from the workflow's expression
text, so nothing in it can become shell), refuses a body over the size limit, and writes
the block's text to the path given; the bundle is then checked by `imagefactory share
--check`, which only reads it. Exit 2 with one line when there is no single json block."""

from __future__ import annotations

import os
import re
import sys

# GitHub keeps at most 65,536 characters of an issue body; anything longer is not from the
# form. (imagefactory's own reader allows 2 MiB: a bigger bundle goes in by pull request.)
LIMIT = 65_536


def main() -> int:
    body = os.environ.get("BODY", "")
    if len(body) > LIMIT:
        print(f"the issue is longer than {LIMIT} characters: not a bundle", file=sys.stderr)
        return 2
    blocks = re.findall(r"```json\r?\n(.*?)\r?\n```", body, flags=re.S)
    if len(blocks) != 1:
        print(f"expected one ```json block (the form's Bundle field), found {len(blocks)}",
              file=sys.stderr)
        return 2
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(blocks[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
