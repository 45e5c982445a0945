"""The engine's logger: a message under the front end's level never loads logging (a quiet run with
nothing to send stays fast); one at or over it loads and sets it up once, and from then on the
logger's own level decides. Each case runs in a fresh interpreter: the test run has logging loaded."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODULE_UTILS = Path(__file__).resolve().parents[4] / "plugins" / "module_utils"

_CASE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from engine.model.log import LOG, LEVELS
set_ups = []

def to_stdout(logger):
    import logging
    set_ups.append(1)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[sys.argv[2]])
    logger.propagate = False

steps = sys.argv[3:]
if steps[:1] == ["preloaded"]:
    import logging
    steps = steps[1:]
LOG.defer(LEVELS[sys.argv[2]], to_stdout)
print("set up at once" if set_ups else "set-up deferred")
for step in steps:
    if step == "handler":
        import logging
        LOG.addHandler(logging.NullHandler())
    elif step == "debug-level":
        LOG.real().setLevel(LEVELS["debug"])
    elif step == "shutdown":
        LOG.shutdown()
    else:
        getattr(LOG, step)("%s said", step)
print(json.dumps({"loaded": "logging" in sys.modules and "traceback" in sys.modules, "set_ups": len(set_ups)}))
"""


def _run(level, *steps):
    out = subprocess.run([sys.executable, "-I", "-S", "-c", _CASE, str(MODULE_UTILS), level, *steps],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    assert out[0] == ("set up at once" if steps[:1] == ("preloaded",) else "set-up deferred")
    return out[1:-1], json.loads(out[-1])


@pytest.mark.parametrize("level, steps, shown, loaded", [
    ("warning", ["debug", "info"], [], False),
    ("warning", ["info", "shutdown"], [], False),
    ("warning", ["info", "warning", "error"], ["WARNING warning said", "ERROR error said"], True),
    ("info", ["debug", "info"], ["INFO info said"], True),
    ("error", ["warning"], [], False),
    ("debug", ["debug"], ["DEBUG debug said"], True),
    # a handler (a notifying job's log tail) needs the real logger at once
    ("warning", ["handler"], [], True),
    # once loaded, the logger's level decides, as it does for any logger
    ("warning", ["warning", "debug-level", "debug"], ["WARNING warning said", "DEBUG debug said"], True),
])
def test_a_message_under_the_level_never_loads_logging(level, steps, shown, loaded):
    lines, state = _run(level, *steps)
    assert lines == shown
    assert state["loaded"] is loaded
    assert state["set_ups"] == (1 if loaded else 0)


def test_with_logging_already_loaded_the_set_up_runs_at_once():
    # The module and the test runs load logging first: the logger's level decides from the start.
    lines, state = _run("warning", "preloaded", "info", "warning", "shutdown")
    assert lines == ["WARNING warning said"]
    assert state == {"loaded": True, "set_ups": 1}
