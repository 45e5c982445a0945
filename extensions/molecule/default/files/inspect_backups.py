"""Run on a fleet host by the verify playbook (with python3): what the subvolumes in a folder are, as JSON.

    inspect_backups.py list FOLDER            -> [{name, uuid, parent_uuid, received_uuid, readonly}]
    inspect_backups.py wait-new FOLDER SECS   -> the first complete backup that was not there
                                                 when it started, and when it was complete
                                                 (CLOCK_MONOTONIC, shared by every container)
"""

import json
import os
import subprocess
import sys
import time


def show(path):
    out = subprocess.run(["btrfs", "subvolume", "show", path], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True,
                         env=dict(os.environ, LC_ALL="C"), check=False)
    if out.returncode != 0:
        return None
    fields = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return {"name": os.path.basename(path), "uuid": none(fields.get("UUID")),
            "parent_uuid": none(fields.get("Parent UUID")),
            "received_uuid": none(fields.get("Received UUID")),
            "readonly": "readonly" in fields.get("Flags", "")}


def none(value):
    return None if value in (None, "", "-") else value


def listing(folder):
    if not os.path.isdir(folder):
        return []
    found = [show(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    return [item for item in found if item is not None]


def complete(item):
    return item["readonly"] and item["received_uuid"] is not None


def wait_new(folder, seconds):
    started = time.monotonic()
    before = {item["name"] for item in listing(folder)}
    while time.monotonic() - started < seconds:
        for item in listing(folder):
            if item["name"] not in before and complete(item):
                item.update(landed_monotonic=time.monotonic(), waited_from_monotonic=started)
                return item
        time.sleep(0.1)
    raise SystemExit("no new backup arrived in %s within %ss" % (folder, seconds))


def main(argv):
    if argv[:1] == ["list"] and len(argv) == 2:
        result = listing(argv[1])
    elif argv[:1] == ["wait-new"] and len(argv) == 3:
        result = wait_new(argv[1], float(argv[2]))
    else:
        raise SystemExit(__doc__)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
