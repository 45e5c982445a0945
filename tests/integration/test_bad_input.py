"""Bad input to the real CLI: a clear error that names the problem, and nothing changed.

Shell metacharacters in hosts, users, paths, prefixes, names and options are proved harmless:
each such value carries a `touch MARKER` payload, and the marker file must not exist after the
run, whether the value was refused or (being a legal file name) used literally.

(test_backup_local.py already covers: source not on btrfs, not a subvolume, missing; a
destination not on btrfs; a prefix with '..'; a negative -N; a corrupt lock file.)
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path
from typing import Callable, List, NamedTuple

import pytest

from cli_helpers import ok, run_cli, run_subcommand, snapshot_names, ssh_args, subvolumes
from support.btrfs_loop import BtrfsPool, CleanupError, create_subvolume, run
from support.trees import assert_same_tree, write_mixed_tree


# -- a shared, unchanging set-up -----------------------------------------------------------------


class World(NamedTuple):
    """Everything a bad-input case may point at; no case may change any of it."""

    src: Path          # a source subvolume with one backup at `dest`
    dest: Path         # its backup folder (on another btrfs)
    snapshot: str      # the name of that backup
    target: Path       # an empty btrfs for restores
    plain: Path        # a folder that is not on btrfs
    marker: Path       # must never exist
    sshd: object

    def url(self, path) -> str:
        return self.sshd.url(path)


@pytest.fixture(scope="module")
def world(btrfs_pool: BtrfsPool, sshd, tmp_path_factory):
    made = [btrfs_pool.filesystem(name, size="256M") for name in ("src", "dst", "target")]
    try:
        src = create_subvolume(made[0] / "data")
        write_mixed_tree(src, n_small=20, small_size=1024, seed=1)
        dest = made[1] / "backups"
        snapshot = ok(src, dest).result["snapshot"]["name"]
        plain = tmp_path_factory.mktemp("not-btrfs")
        yield World(src, dest, snapshot, made[2], plain, plain / "pwned", sshd)
    finally:
        problems = []
        for mount in made:
            try:
                btrfs_pool.release(mount)
            except CleanupError as err:
                problems.append(str(err))
        assert not problems, problems


def state(world: World):
    """Every name, file type and size under the set-up's folders, and every subvolume."""
    seen = {}
    for top in (world.src.parent, world.dest.parent, world.target, world.plain):
        for dirpath, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(dirpath, name)
                info = os.lstat(path)
                if name in (".btrfs-backup.lock", ".btrfs-backup.last-run.json"):
                    continue  # the pid and the record of the last run (rule 11): not data
                seen[path] = (stat.S_IFMT(info.st_mode), info.st_size)
    for top in (world.src / "snapshot", world.dest, world.target):
        seen.update({"subvolume " + str(s.path): s for s in subvolumes(top).values()})
    return seen


def payload(world: World) -> str:
    """A shell command that would leave the marker file behind if a shell ever ran it."""
    return "touch %s" % shlex.quote(str(world.marker))


# -- the cases -------------------------------------------------------------------------------------


class Case(NamedTuple):
    args: Callable[[World], List[str]]   # CLI arguments (a subcommand first, if any)
    expect: Callable[[World], List[str]]  # texts the error message must contain
    code: int = 2                         # 2: bad input; 1: a location that cannot be used


def _cases():
    pay = "$(touch {m})"
    return {
        # -- relative paths where absolute ones are needed
        "restore target relative": Case(
            lambda w: ["restore", w.dest, "restored"],
            lambda w: ["'restored'", "absolute"]),
        "ssh URL without a path": Case(
            lambda w: [w.src, "ssh://root@127.0.0.2"],
            lambda w: ["ssh://root@127.0.0.2", "absolute/path"]),
        "ssh URL with a relative path": Case(
            lambda w: [w.src, "ssh://root@127.0.0.2:22srv/backups"],
            lambda w: ["'22srv'", "not a number"]),
        # -- '..' escapes
        "source with ..": Case(
            lambda w: [str(w.src) + "/../data", w.dest],
            lambda w: ["..", "not allowed"]),
        "destination with ..": Case(
            lambda w: [w.src, str(w.dest) + "/../../etc"],
            lambda w: ["/../../etc", "not allowed"]),
        "snapshot folder escaping the source": Case(
            lambda w: ["-f", "../elsewhere", w.src, w.dest],
            lambda w: ["'../elsewhere'", "not allowed"]),
        "ssh path with ..": Case(
            lambda w: [w.src, w.url("/srv/../etc")],
            lambda w: ["/srv/../etc", "not allowed"]),
        "restore target with ..": Case(
            lambda w: ["restore", w.dest, str(w.target) + "/../escaped"],
            lambda w: ["/../escaped", "not allowed"]),
        "restore snapshot name with ..": Case(
            lambda w: ["restore", "--snapshot", "../../etc", w.dest, w.target / "x"],
            lambda w: ["'../../etc'", "not allowed"]),
        "verify source with ..": Case(
            lambda w: ["verify", str(w.src) + "/../data", w.dest],
            lambda w: ["..", "not allowed"]),
        # -- malformed ssh:// URLs
        "ssh URL empty": Case(
            lambda w: [w.src, "ssh://"],
            lambda w: ["'ssh://'", "not a valid ssh URL"]),
        "ssh URL empty user": Case(
            lambda w: [w.src, "ssh://@127.0.0.2/srv"],
            lambda w: ["ssh://@127.0.0.2/srv", "not a valid ssh URL"]),
        "ssh URL port too big": Case(
            lambda w: [w.src, "ssh://root@127.0.0.2:99999/srv"],
            lambda w: ["99999", "port"]),
        "ssh URL port not a number": Case(
            lambda w: [w.src, "ssh://root@127.0.0.2:ssh/srv"],
            lambda w: ["'ssh'", "not a number"]),
        "unknown scheme": Case(
            lambda w: [w.src, "sftp://127.0.0.2/srv"],
            lambda w: ["sftp://127.0.0.2/srv", "unknown scheme"]),
        "shell:// as a source": Case(
            lambda w: ["shell://cat /dev/zero", w.dest],
            lambda w: ["shell://", "only be a destination"]),
        "shell:// as a restore origin": Case(
            lambda w: ["restore", "shell://cat x", w.target / "x"],
            lambda w: ["shell://", "only be a destination"]),
        # -- shell metacharacters: refused where the value has a fixed alphabet
        "host with ;": Case(
            lambda w: [w.src, "ssh://root@127.0.0.2;%s/srv" % payload(w).replace(" ", "${IFS}")],
            lambda w: ["not a valid"]),
        "host with $()": Case(
            lambda w: [w.src, "ssh://root@%s/srv" % pay.format(m=w.marker).replace("/", "")],
            lambda w: ["not a valid"]),
        "host that is an ssh option": Case(
            lambda w: [w.src, "ssh://-oProxyCommand=%s/srv" % payload(w).replace(" ", "${IFS}")
                       .replace("/", "")],
            lambda w: ["not a valid"]),
        "user with $()": Case(
            lambda w: [w.src, "ssh://%s@127.0.0.2/srv" % pay.format(m="x")],
            lambda w: ["'$(touch x)'", "not a valid user name"]),
        "prefix with $()": Case(
            lambda w: ["-p", pay.format(m=w.marker), w.src, w.dest],
            lambda w: [pay.format(m=w.marker), "prefix"]),
        "prefix with ;": Case(
            lambda w: ["-p", "x;" + payload(w), w.src, w.dest],
            lambda w: ["prefix", "not allowed"]),
        "restore snapshot name with $()": Case(
            lambda w: ["restore", "--snapshot", pay.format(m=w.marker), w.dest, w.target / "x"],
            lambda w: ["snapshot name", "not allowed"]),
        "verify prefix with `…`": Case(
            lambda w: ["verify", "-p", "`%s`" % payload(w), w.src, w.dest],
            lambda w: ["prefix", "not allowed"]),
        "ssh option that is a command-line flag": Case(
            lambda w: ["--ssh-opt", "-oProxyCommand=" + payload(w), w.src, w.url("/srv")],
            lambda w: ["ssh option", "Key=value"]),
        "ssh option with a newline": Case(
            lambda w: ["--ssh-opt", "Port=22\n" + payload(w), w.src, w.url("/srv")],
            lambda w: ["ssh option", "Key=value"]),
        # -- retention values
        "negative -n": Case(
            lambda w: ["-n", "-3", w.src, w.dest],
            lambda w: ["-n", "negative"]),
        "non-numeric -N": Case(
            lambda w: ["-N", "abc", w.src, w.dest],
            lambda w: ["-N", "'abc' is not a whole number"]),
        "fractional -n": Case(
            lambda w: ["-n", "1.5", w.src, w.dest],
            lambda w: ["-n", "'1.5' is not a whole number"]),
        "retention term without a number": Case(
            lambda w: ["--preserve-backups", "7d abc", w.src, w.dest],
            lambda w: ["'abc'", "not valid"]),
        "negative retention term": Case(
            lambda w: ["--preserve-snapshots=-3d", w.src, w.dest],
            lambda w: ["'-3d'", "not valid"]),
        "retention term with an unknown unit": Case(
            lambda w: ["--preserve-snapshots", "24h 3x", w.src, w.dest],
            lambda w: ["'3x'", "not valid"]),
        # -- missing things
        "missing argument file": Case(
            lambda w: ["@" + str(w.plain / "nope.conf")],
            lambda w: [str(w.plain / "nope.conf"), "cannot read argument file"]),
        "restore from a missing folder": Case(
            lambda w: ["restore", w.dest.parent / "nope", w.target / "x"],
            lambda w: [str(w.dest.parent / "nope"), "does not exist"], code=1),
        "restore into a missing folder": Case(
            lambda w: ["restore", w.dest, w.target / "nope" / "x"],
            lambda w: [str(w.target / "nope"), "does not exist"], code=1),
        "restore a backup that is not there": Case(
            lambda w: ["restore", "--snapshot", "20000101-000000", w.dest, w.target / "x"],
            lambda w: ["no backup named 20000101-000000", w.snapshot]),
        "restore into a folder not on btrfs": Case(
            lambda w: ["restore", w.dest, w.plain / "x"],
            lambda w: [str(w.plain), "not on a btrfs filesystem"], code=1),
        "restore from a folder not on btrfs": Case(
            lambda w: ["restore", w.plain, w.target / "x"],
            lambda w: [str(w.plain), "not on a btrfs filesystem"], code=1),
        "verify a snapshot that is not there": Case(
            lambda w: ["verify", "--snapshot", "20000101-000000", w.src, w.dest],
            lambda w: ["no snapshot named 20000101-000000"]),
        "verify a source that is missing": Case(
            lambda w: ["verify", w.src.parent / "nope", w.dest],
            lambda w: [str(w.src.parent / "nope"), "does not exist"], code=1),
    }


CASES = _cases()


def run_case(args):
    args = [os.fspath(a) for a in args]
    if args and args[0] in ("restore", "verify"):
        return run_subcommand(args[0], *args[1:])
    return run_cli(*args)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly_and_changes_nothing(world, case):
    spec = CASES[case]
    before = state(world)

    done = run_case(spec.args(world))

    assert done.code == spec.code, done.explain()
    for text in spec.expect(world):
        assert text in done.stderr, (text, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert state(world) == before, "something changed"
    assert not world.marker.exists(), "a shell ran the payload"


# -- argument files ------------------------------------------------------------------------------


def test_an_unknown_option_in_an_argument_file(world, tmp_path):
    conf = tmp_path / "job.conf"
    conf.write_text("--num-snapshots 3\n--frobnicate yes\n%s\n%s\n" % (world.src, world.dest))
    before = state(world)

    done = run_cli("@%s" % conf)

    assert done.code == 2, done.explain()
    assert "unrecognized arguments: --frobnicate" in done.stderr, done.stderr
    assert state(world) == before


@pytest.mark.parametrize("loop", ["itself", "through another file"])
def test_an_argument_file_include_loop(world, tmp_path, loop):
    a, b = tmp_path / "a.conf", tmp_path / "conf.d" / "b.conf"
    b.parent.mkdir()
    if loop == "itself":
        a.write_text("-N 1\n@a.conf\n%s\n" % world.src)
        chain = [a, a]
    else:
        a.write_text("-N 1\n@conf.d/b.conf\n%s\n" % world.src)
        b.write_text("# back to the top\n@../a.conf\n")
        chain = [a, b, a]
    before = state(world)

    done = run_cli("@%s" % a)

    assert done.code == 2, done.explain()
    assert "argument file include loop: %s" % " -> ".join(map(str, chain)) in done.stderr, done.stderr
    assert state(world) == before


# -- metacharacters in values that are legal file names: used literally, never run ------------


NASTY = ["$(touch {m})", "; touch {m}", "`touch {m}`", "a b' \"; touch {m} #", "| touch {m} &"]


def marker_places(tmp_path):
    """Where a relative `touch NAME` would land: the CLI's working folder here, and the home
    folder that remote commands start in."""
    return [tmp_path, Path.home(), Path("/")]


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_paths_with_shell_metacharacters_are_only_names(world, make_fs, subvolume, tmp_path, where):
    """A source, a destination, a snapshot folder and a restore target whose names hold shell
    syntax: the backup, its retention, verify and the restore all work on those exact names,
    and nothing runs. Over ssh every remote command line is quoted word by word."""
    marker = "btrfs-backup-pwned-%s" % tmp_path.name
    names = [n.format(m=marker) for n in NASTY]
    fs = make_fs("nasty", size="256M")
    source = subvolume(fs / names[0])
    write_mixed_tree(source, n_small=10, small_size=1024, seed=3)
    folder = make_fs("nasty-dst", size="256M") / names[1]
    nested = folder / names[2]
    folder.mkdir()
    if where == "local":
        src_loc, dests, flags = source, [folder, nested], []
    else:
        src_loc, flags = world.url(source), ssh_args(world.sshd)
        dests = [world.url(folder), world.url(nested)]
    target = world.target / names[4]

    for _ in range(2):
        done = ok(*flags, "-N", "1", "-n", "1", "-f", names[3], src_loc, *dests, cwd=tmp_path)
    name = done.result["snapshot"]["name"]
    restored = run_subcommand("restore", *flags, dests[1], target)
    verified = run_subcommand("verify", *flags, "-f", names[3], src_loc, dests[0])
    try:
        assert [p for p in marker_places(tmp_path) if (p / marker).exists()] == [], \
            "a shell ran the payload"
        assert snapshot_names(source / names[3]) == [name]
        assert snapshot_names(folder) == [name] and snapshot_names(nested) == [name]
        assert restored.code == 0, restored.explain()
        assert_same_tree(source / names[3] / name, target)
        assert verified.code == 0 and verified.result["ok"], verified.explain()
    finally:
        if target.exists():
            run(["btrfs", "subvolume", "delete", target])


def test_ssh_options_with_shell_syntax_are_passed_to_ssh_as_one_word(world, tmp_path):
    """--ssh-opt values go to ssh as single argv items; a value with shell syntax is at most a
    bad value for ssh, never a command."""
    marker = "btrfs-backup-pwned-%s" % tmp_path.name
    before = state(world)
    done = run_cli("--require-destination",
                   "--ssh-opt", "IdentityFile=/nonexistent/$(touch %s)" % marker,
                   "--ssh-opt", "BatchMode=yes", "--ssh-opt", "ConnectTimeout=5",
                   world.src, world.url("/srv/`touch %s`" % marker), cwd=tmp_path)
    assert [p for p in marker_places(tmp_path) if (p / marker).exists()] == []
    assert done.code == 1, done.explain()
    assert "no snapshot taken" in done.stderr, done.stderr
    assert state(world) == before
