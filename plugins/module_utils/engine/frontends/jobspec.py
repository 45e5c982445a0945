"""A job as status and the info module see it: from a backup command line, an @argfile or the role's config folder."""

import glob
import os
from dataclasses import dataclass, field, replace
from typing import List, Optional

from .argfiles import expand_argfiles
from ..host.job_source import job_source
from ..model.errors import ConfigError
from ..model.units import parse_duration
from ..model.job_identity import JobIdentity
from ..host.state_store import current_state_path

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

    @property
    def name(self):
        return self.identity.name

    @property
    def source_id(self):
        return self.identity.source_id

    @property
    def folder(self):
        return self.identity.snapshot_folder

    @property
    def prefix(self):
        return self.identity.prefix

    @property
    def state_path(self):
        return current_state_path(self.identity)

    def named(self, name):
        """The same job under another name (None keeps it)."""
        return replace(self, identity=self.identity.named(name))


class _ArgumentError(Exception):
    pass


def job_from_args(argv, name=None, config_file=None):
    """A JobSpec from the arguments of a backup run (@argfiles expanded); ConfigError if unusable."""
    import argparse
    from .cli import build_parser
    from ..host.recording import add_options
    parser = build_parser()
    add_options(parser)

    def fail(message):
        raise _ArgumentError(message)
    parser.error = fail  # report, do not exit: one bad job must not hide the others
    try:
        options = parser.parse_args(expand_argfiles(list(argv)))
    except (_ArgumentError, argparse.ArgumentError) as err:
        raise ConfigError("%s: %s" % (config_file or " ".join(argv), err))
    _source, identity = job_source(options.source, ssh_options=options.ssh_opt, ssh_sudo=options.ssh_sudo,
                                   snapshot_folder=options.snapshot_folder, prefix=options.snapshot_prefix,
                                   job_name=options.job_name or name)
    return JobSpec(identity=identity, source=options.source, destinations=list(options.dest),
                   ssh_options=list(options.ssh_opt), ssh_sudo=options.ssh_sudo,
                   max_age=parse_duration(options.max_age, "--max-age") if options.max_age else None,
                   config_file=config_file, metrics_dir=options.metrics_dir,
                   name_given=bool(options.job_name or name))


def jobs_from_config_dir(config_dir=DEFAULT_CONFIG_DIR):
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
