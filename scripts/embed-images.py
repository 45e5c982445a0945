#!/usr/bin/env python3
"""Embed each picture of the guides into them as a data: URI (--check: fail if one is out of date).

The docs site build copies a collection's .rst files and nothing else, so a guide's picture travels
inside its .rst file. In a guide, the comment `.. embedded picture: docs/images/NAME.png` names the
file; the `.. image::` directive after it (and a blank line) carries that file's bytes, base64,
76 characters a line. Run it after a new screenshot (tests/integration/test_fleet_report.py writes
one with FLEET_REPORT_SCREENSHOT set).
"""

import base64
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUIDES = REPO / "docs" / "docsite" / "rst"
_EMBEDDED = re.compile(r"^\.\. embedded picture: (\S+\.png)\n\n"
                       r"\.\. image:: data:image/png;base64,\n(?:   [A-Za-z0-9+/=]+\n)*", re.MULTILINE)


def embedded(match: re.Match) -> str:
    """The comment and the image directive of `match`, with the named file's bytes."""
    data = base64.b64encode((REPO / match.group(1)).read_bytes()).decode()
    lines = ["   " + data[i:i + 76] for i in range(0, len(data), 76)]
    return "".join(line + "\n" for line in
                   [".. embedded picture: " + match.group(1), "", ".. image:: data:image/png;base64,"] + lines)


def main() -> None:
    stale = []
    for guide in sorted(GUIDES.glob("*.rst")):
        text = guide.read_text()
        updated = _EMBEDDED.sub(embedded, text)
        if updated != text:
            stale.append(str(guide.relative_to(REPO)))
            if "--check" not in sys.argv[1:]:
                guide.write_text(updated)
    if stale and "--check" in sys.argv[1:]:
        sys.exit("the pictures embedded in %s are out of date: run scripts/embed-images.py" % ", ".join(stale))


if __name__ == "__main__":
    main()
