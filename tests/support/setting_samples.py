"""A value other than the default for each job setting of the table, and how the CLI writes it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# One value other than any default, by the setting's kind (engine/model/job_settings.py). A new
# kind has no sample: the tests of every front end fail until it gets one here.
_BY_TYPE = {
    "count": lambda setting: setting.default + 7,
    "str": lambda setting: "other",
    "path": lambda setting: "snaps",
    "prefix": lambda setting: "home-",
    "policy": lambda setting: "24h 7d",
    "size": lambda setting: "20M",
    "compression": lambda setting: "zstd:5",
    "choice": lambda setting: [c for c in setting.choices if c != setting.default][-1],
    "locations": lambda setting: ["/mnt/b1", "/mnt/b2"],
    "ssh_options": lambda setting: ["ServerAliveInterval=5", "Compression=no"],
    "origin": lambda setting: "snapper:home",
}


def sample(setting):
    """A value of `setting` that is not its default (as the engine's JobConfig holds it)."""
    if setting.type == "bool":
        return not setting.default
    value = _BY_TYPE[setting.type](setting)
    assert value != (list(setting.default) if isinstance(setting.default, tuple) else setting.default), setting.name
    return value


def cli_words(setting, flag, value):
    """The command line words that give `value` to `setting` with `flag` (a positional: the values)."""
    if not flag.startswith("-"):
        return list(value)
    if setting.type == "bool":
        return [flag] if value else []
    if isinstance(value, list):
        return [word for item in value for word in (flag, item)]
    return [flag, str(value)]


def config_lines(setting, value):
    """The lines of an argument file (one '--option value' pair per line) that give `value` to `setting`."""
    flag = setting.flags[-1]
    words = cli_words(setting, flag, value)
    if setting.type == "bool" or not flag.startswith("-"):
        return words
    return [" ".join(words[i:i + 2]) for i in range(0, len(words), 2)]
