"""Effects: what systemd says of the role's units for each job (is a timer meant to run it, and when next)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

from ..model.health import TimerState
from .runner import CommandRunner

if TYPE_CHECKING:
    from typing import Iterable

_PROPERTIES = "Id,LoadState,ActiveState,NextElapseUSecRealtime"
_RUNNING = ("activating", "active", "deactivating", "reloading")  # a service's states while it runs


def timer_unit(job: str) -> str:
    """The timer the role installs for a job."""
    return "btrfs-backup@%s.timer" % job


def service_unit(job: str) -> str:
    """The service the role installs for a job (its timer starts it)."""
    return "btrfs-backup@%s.service" % job


def parse_timer_states(names: Iterable[str], text: str) -> dict[str, TimerState]:
    """Pure: {job: TimerState} from `systemctl show` of each job's timer and service."""
    units = {}
    for block in text.split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            units[fields["Id"]] = fields
    found = {}
    for name in names:
        timer, service = units.get(timer_unit(name), {}), units.get(service_unit(name), {})
        when = timer.get("NextElapseUSecRealtime", "")
        found[name] = TimerState(
            unit=timer_unit(name),
            installed=timer.get("LoadState") == "loaded",
            active=timer.get("ActiveState") in ("active", "reloading"),
            next_run=when if when not in ("", "0", "n/a") else None,
            service_installed=service.get("LoadState") == "loaded",
            running=service.get("ActiveState") in _RUNNING)
    return found


def read_timer_states(names: Iterable[str], runner: CommandRunner | None = None) -> dict[str, TimerState]:
    """{job: TimerState} for the named jobs, in one `systemctl show`; {} where systemd cannot
    tell (no systemd, as in a container or a chroot): then no job counts as run by a timer."""
    if not names:
        return {}
    runner = runner or CommandRunner()
    units = [unit for name in names for unit in (timer_unit(name), service_unit(name))]
    try:
        result = runner.run(["systemctl", "show", "--property=" + _PROPERTIES, "--"] + units)
    except OSError:
        return {}
    if getattr(result, "returncode", 1) != 0:
        return {}
    return parse_timer_states(names, result.stdout)
