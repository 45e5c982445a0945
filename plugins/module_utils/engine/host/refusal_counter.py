# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""serve's refusals counted per source host and kind, in a node_exporter textfile that is also the state.

The file holds one Prometheus counter, `btrfs_backup_serve_refusals_total{source_host, kind}`.
serve reads it, adds one, and replaces it atomically (a temporary file renamed over it) while
holding a lock on its folder, so concurrent sessions of several hosts never lose a count. A
host's counters are written at 0 when it first connects, so the first refusal is an increase.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile

METRIC = "btrfs_backup_serve_refusals_total"
HELP = "Commands btrfs-backup serve refused, per source host (the key's folder) and kind of refusal."
_SAMPLE_RE = re.compile(r'^%s\{source_host="((?:[^"\\]|\\.)*)",kind="([a-z-]+)"\} (\d+)$' % METRIC)


def _escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_counts(text: str) -> dict:
    """Pure: {(source host, kind): count} from the file's text; lines that are not ours are dropped."""
    counts = {}
    for line in (text or "").splitlines():
        match = _SAMPLE_RE.match(line)
        if match:
            counts[(_unescape(match.group(1)), match.group(2))] = int(match.group(3))
    return counts


def render_counts(counts: dict) -> str:
    """Pure: the textfile for `counts`, sorted, with its HELP and TYPE."""
    lines = ["# HELP %s %s" % (METRIC, HELP), "# TYPE %s counter" % METRIC]
    for (host, kind), count in sorted(counts.items()):
        lines.append('%s{source_host="%s",kind="%s"} %d' % (METRIC, _escape(host), kind, count))
    return "\n".join(lines) + "\n"


def counted(counts: dict, host: str, kinds, add_to: str | None = None) -> dict:
    """Pure: `counts` with every kind of `host` present (0 if new), and one more of `add_to`."""
    updated = dict(counts)
    for kind in kinds:
        updated.setdefault((host, kind), 0)
    if add_to is not None:
        updated[(host, add_to)] = updated.get((host, add_to), 0) + 1
    return updated


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def known(path: str, host: str, kinds) -> bool:
    """Whether the file already holds every kind of counter of `host` (read without the lock)."""
    text = _read(path)  # read at every connection: a substring test, not a parse
    return all('{source_host="%s",kind="%s"} ' % (_escape(host), kind) in text for kind in kinds)


def update(path: str, host: str, kinds, add_to: str | None = None) -> None:
    """Add one refusal of kind `add_to` (None: only make sure `host`'s counters exist), atomically."""
    folder = os.path.dirname(path) or "."
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder_fd, fcntl.LOCK_EX)
        text = render_counts(counted(parse_counts(_read(path)), host, kinds, add_to))
        handle, temporary = tempfile.mkstemp(prefix=".refusals-", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                os.fchmod(out.fileno(), 0o644)  # node_exporter reads it as another user
            os.rename(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    finally:
        os.close(folder_fd)  # also releases the lock
