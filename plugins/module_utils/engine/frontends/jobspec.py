"""A job as status and the info module see it: from a backup command line, an @argfile or the role's config folder."""

from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass, field, replace

from .argfiles import expand_argfiles
from .job_options import build_parser, settings_from_options
from ..host.job_source import job_source
from ..host.recording import add_options
from ..model import job_settings
from ..model.errors import ConfigError
from ..model.units import parse_duration
from ..model.job_identity import JobIdentity
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

DEFAULT_CONFIG_DIR = "/etc/btrfs-backup"


@dataclass
class JobSpec:
    """Where a job's snapshots, backups and last-run state are."""
    identity: JobIdentity
    source: str
    destinations: List[str] = field(default_factory=list)
    ssh_options: List[str] = field(default_factory=list)
    ssh_sudo: bool = False
    max_age: Optional[int] = None
    config_file: Optional[str] = None
    metrics_dir: Optional[str] = None
    # False for a job given ad hoc without --job-name: the name its runs recorded is its name.
    name_given: bool = True
    # "own", or "snapper:CONFIG": snapper takes the job's snapshots (model/snapper.py).
    source_snapshots: str = "own"

    def named(self, name: str | None) -> JobSpec:
        """The same job under another name (None keeps it)."""
        return replace(self, identity=self.identity.named(name))


class _ArgumentError(Exception):
    pass


def job_from_args(argv: list[str], name: str | None = None, config_file: str | None = None) -> JobSpec:
    """A JobSpec from the arguments of a backup run (@argfiles expanded); ConfigError if unusable."""
    parser = build_parser()
    add_options(parser)

    def fail(message):
        raise _ArgumentError(message)
    parser.error = fail  # report, do not exit: one bad job must not hide the others
    try:
        options = parser.parse_args(expand_argfiles(list(argv)))
    except (_ArgumentError, argparse.ArgumentError) as err:
        raise ConfigError("%s: %s" % (config_file or " ".join(argv), err))
    return job_from_settings(options.source, settings_from_options(options), name=options.job_name or name,
                             max_age=parse_duration(options.max_age, "--max-age") if options.max_age else None,
                             config_file=config_file, metrics_dir=options.metrics_dir)


def job_from_settings(source: str, settings: Dict[str, Any], name: Optional[str] = None,
                      max_age: Optional[int] = None, config_file: Optional[str] = None,
                      metrics_dir: Optional[str] = None) -> JobSpec:
    """A JobSpec from a source and job settings (the table's names; those left out take their
    defaults); without a name, one made from the source. ConfigError if unusable."""
    settings = dict(job_settings.defaults(), **settings)
    _source, identity = job_source(source, ssh_options=settings["ssh_options"], ssh_sudo=settings["ssh_sudo"],
                                   snapshot_folder=settings["snapshot_folder"], prefix=settings["prefix"],
                                   job_name=name, source_snapshots=settings["source_snapshots"])
    return JobSpec(identity=identity, source=source, destinations=list(settings["destinations"]),
                   ssh_options=list(settings["ssh_options"]), ssh_sudo=settings["ssh_sudo"],
                   max_age=max_age, config_file=config_file, metrics_dir=metrics_dir, name_given=bool(name),
                   source_snapshots=settings["source_snapshots"])


def jobs_from_config_dir(config_dir: str = DEFAULT_CONFIG_DIR) -> tuple[list[JobSpec], list[str]]:
    """([JobSpec], [error]) for every *.conf in the folder the role writes job configs to."""
    jobs, errors = [], []
    for path in sorted(glob.glob(os.path.join(config_dir, "*.conf"))):
        name = os.path.basename(path)[:-len(".conf")]
        if name.endswith(".verify"):
            continue  # a job's restore drill (NAME.verify.conf), not a job
        try:
            jobs.append(job_from_args(["@" + path], name=name, config_file=path))
        except ConfigError as err:
            errors.append(str(err))
    return jobs, errors
