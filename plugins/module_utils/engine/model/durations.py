"""Pure: durations as people write them ('36h', '7d 12h') and ages as people read them."""

import re

from .errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^([0-9]+)([smhdw])$")


def parse_duration(text):
    """Seconds in '90m', '36h', '7d 12h', '2w' or a plain number of seconds; ConfigError else."""
    value = str(text).strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    total = 0
    for term in value.replace(",", " ").split():
        match = _DURATION_RE.match(term)
        if not match:
            raise ConfigError("%r is not a duration: use e.g. 90m, 36h, 7d, 2w or seconds" % (text,))
        total += int(match.group(1)) * _UNITS[match.group(2)]
    if total <= 0:
        raise ConfigError("%r is not a duration: it must be longer than 0 seconds" % (text,))
    return total


def format_age(seconds):
    """'3d 4h', '5h 2m', '42s': an age a person reads at a glance."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return "%d%s %d%s" % (seconds // size, unit, rest, sub) if rest else "%d%s" % (seconds // size, unit)
    return "%dm" % (seconds // 60) if seconds >= 60 else "%ds" % seconds
