"""engine.run.restore.choose_backup and engine.run.verify's manifests: the pure parts of restore/verify."""

import pytest

from engine.model.errors import BackupError, ConfigError
from engine.host.listing import Subvolume
from engine.run.restore import choose_backup
from engine.run.verify import compare_manifests, manifest_commands, parse_manifest


def sub(name, readonly=True, received="r", folder="/backup"):
    """A subvolume in the backup folder; received=None: not received (not a complete backup)."""
    return Subvolume(name, folder + "/" + name, 256, "uuid-" + name, None,
                     None if received is None else "%s-%s" % (received, name), readonly)


def folder(*subs):
    return {s.name: s for s in subs}


# -- choose_backup -------------------------------------------------------------------------------


def test_the_newest_complete_backup_is_chosen_by_the_time_in_its_name():
    held = folder(sub("20240101-000000"), sub("20250101-000000"), sub("20241231-235959"))
    assert choose_backup(held).name == "20250101-000000"


def test_newest_skips_partials_foreign_names_and_other_prefixes():
    held = folder(
        sub("20240101-000000"),
        sub("20260101-000000", readonly=False, received=None),  # a partial receive
        sub("20250101-000000", received=None),                  # read-only, never received
        sub("home-20270101-000000"),                            # another prefix
        sub("latest"),                                          # not a snapshot name
    )
    assert choose_backup(held).name == "20240101-000000"


def test_newest_with_a_prefix():
    held = folder(sub("home-20240101-000000"), sub("home-20240102-000000"),
                  sub("root-20250101-000000"), sub("20260101-000000"))
    assert choose_backup(held, prefix="home-").name == "home-20240102-000000"
    assert choose_backup(held, prefix="root-").name == "root-20250101-000000"


def test_no_complete_backup_is_an_error_naming_the_prefix():
    held = folder(sub("20240101-000000", readonly=False, received=None))
    with pytest.raises(BackupError, match="no complete backup with prefix 'home-'"):
        choose_backup(held, prefix="home-")
    with pytest.raises(BackupError, match="no complete backup"):
        choose_backup({})


def test_a_backup_by_name_may_have_any_safe_name():
    held = folder(sub("before-upgrade"), sub("20240101-000000"))
    assert choose_backup(held, name="before-upgrade").path == "/backup/before-upgrade"


def test_a_missing_name_lists_what_there_is():
    held = folder(sub("20240101-000000"), sub("20240102-000000"))
    with pytest.raises(ConfigError) as err:
        choose_backup(held, name="20230101-000000")
    assert str(err.value) == ("no backup named 20230101-000000 here "
                              "(have: 20240101-000000, 20240102-000000)")
    with pytest.raises(ConfigError, match=r"\(have: none\)"):
        choose_backup({}, name="20230101-000000")


@pytest.mark.parametrize("readonly, received", [(False, None), (True, None), (False, "r")],
                         ids=["partial", "read-only, not received", "made writable"])
def test_a_named_backup_must_be_complete(readonly, received):
    held = folder(sub("20240101-000000", readonly=readonly, received=received))
    with pytest.raises(BackupError, match="is not a complete backup") as err:
        choose_backup(held, name="20240101-000000")
    assert not isinstance(err.value, ConfigError)
    assert "/backup/20240101-000000" in str(err.value)


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "-rf", "$(touch x)", "a b", "x\n", ""])
def test_an_unsafe_name_is_refused_before_it_is_looked_up(name):
    held = {name: sub("20240101-000000")}  # even if a listing had it
    with pytest.raises(ConfigError, match="not allowed"):
        choose_backup(held, name=name)


# -- parse_manifest --------------------------------------------------------------------------------


def find_record(path, kind, mode="644", owner="0:0", size="0", link=""):
    """One record as `find -printf` writes it (see verify._FIND_FORMAT)."""
    return "\0".join([path, kind, mode, owner, size, link]) + "\0"


def sums(*pairs):
    """`sha256sum -z` output for (path, digest) pairs, paths as `find .` gives them."""
    return "".join("%s  ./%s\0" % (digest, path) for path, digest in pairs)


A, B = "a" * 64, "b" * 64


def test_a_manifest_describes_each_entry_by_kind():
    find = (find_record("d", "d", "755", size="12")
            + find_record("d/file.txt", "f", "600", "1000:100", "6")
            + find_record("link", "l", "777", size="9", link="d/file.txt")
            + find_record("fifo", "p"))
    manifest = parse_manifest(find, sums(("d/file.txt", A)))
    assert manifest == {
        "d": "d mode=755 owner=0:0",  # a directory's size is not compared
        "d/file.txt": "f mode=600 owner=1000:100 size=6 sha256=" + A,
        "link": "l mode=777 owner=0:0 -> d/file.txt",
        "fifo": "p mode=644 owner=0:0",
    }


@pytest.mark.parametrize("name", ["we ird  name", "new\nline", "tab\there", "back\\slash",
                                  "caf\u00e9", "./dot-slash", "  leading"])
def test_any_file_name_survives_the_manifest(name):
    manifest = parse_manifest(find_record(name, "f", size="1"), sums((name, A)))
    assert manifest == {name: "f mode=644 owner=0:0 size=1 sha256=" + A}


def test_an_empty_tree_has_an_empty_manifest():
    assert parse_manifest("", "") == {}


@pytest.mark.parametrize("output", [
    "path\0f\0644\0",                       # cut in the middle of a record
    find_record("a", "f")[:-1],             # the last NUL missing
    find_record("a", "f") + "b\0f\0",       # a second record cut short
], ids=["short record", "no final NUL", "trailing partial record"])
def test_truncated_find_output_is_an_error(output):
    with pytest.raises(ValueError, match="unexpected find output"):
        parse_manifest(output, "")


def test_a_checksum_of_a_path_find_did_not_list_is_ignored():
    manifest = parse_manifest(find_record("a", "f", size="1"), sums(("a", A), ("ghost", B)))
    assert manifest == {"a": "f mode=644 owner=0:0 size=1 sha256=" + A}


def test_the_commands_stay_inside_one_subvolume_and_quote_nothing():
    (find, _), (sums_cmd, _) = manifest_commands("/backup/x y")
    assert find[:3] == ["find", "/backup/x y", "-xdev"] and "-inum" in find
    # The root reaches the shell as "$1", never as part of the script.
    assert sums_cmd[:2] == ["sh", "-c"] and sums_cmd[-1] == "/backup/x y"
    assert "/backup" not in sums_cmd[2]


# -- compare_manifests -----------------------------------------------------------------------------


def test_identical_manifests_have_no_differences():
    manifest = {"a": "f mode=644 owner=0:0 size=1 sha256=" + A, "d": "d mode=755 owner=0:0"}
    assert compare_manifests(manifest, dict(manifest)) == []


def test_every_kind_of_difference_is_named_in_path_order():
    expected = {"b": "f size=1 sha256=" + A, "a": "d mode=755", "c": "f mode=644"}
    actual = {"b": "f size=1 sha256=" + B, "c": "f mode=600", "z": "f new"}
    assert compare_manifests(expected, actual) == [
        "missing in backup: a",
        "differs: b (f size=1 sha256=%s vs f size=1 sha256=%s)" % (A, B),
        "differs: c (f mode=644 vs f mode=600)",
        "only in backup: z",
    ]


def test_the_list_of_differences_is_limited():
    expected = {"f%03d" % i: "f" for i in range(100)}
    differences = compare_manifests(expected, {}, limit=5)
    assert differences == ["missing in backup: f%03d" % i for i in range(5)] + [
        "... (stopped after 5 differences)"]
    assert len(compare_manifests(expected, {})) == 51
