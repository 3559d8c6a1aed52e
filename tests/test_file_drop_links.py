"""File drops take regular files only: links, pipes, sockets and devices are moved to error/
unread, folders are left alone, and a file swapped for a link after it was seen is not followed."""

import os
import signal
import socket
import stat

import pytest

from connectors import polling
from connectors.files.spool import Spool
from connectors.models import Job, SourceFile
from connectors.sources.file_drop import FileDropSource
from tests.test_file_drop import answer, drop, drop_folder, make_file_connector, process
from tests.worker import drain

__all__ = ["drop_folder", "make_file_connector"]  # fixtures shared with tests/test_file_drop.py

pytestmark = pytest.mark.django_db(transaction=True)

CANARY = "canary-3b9d1e77-not-for-the-outbox"


@pytest.fixture
def outside(tmp_path):
    """A file the run_sources user can read, outside the drop folder, that nobody may read."""
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(f"note\n{CANARY}\n")
    # An access time before the modification time: reading the file would update it (relatime).
    status = secret.stat()
    os.utime(secret, ns=(status.st_mtime_ns - 10**12, status.st_mtime_ns))
    return secret


@pytest.fixture
def fails_instead_of_hanging():
    """A poll that blocks (opening a named pipe waits for a writer) fails the test instead."""

    def hung(signum, frame):
        raise TimeoutError("the poll blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def assert_untouched(secret, before: os.stat_result) -> None:
    after = secret.stat()
    assert secret.read_text() == f"note\n{CANARY}\n"
    assert (after.st_mtime_ns, after.st_atime_ns) == (before.st_mtime_ns, before.st_atime_ns)


def assert_canary_nowhere(drop_folder) -> None:
    """Not in anything the poller wrote or recorded (links themselves are not followed)."""
    for folder in ("outbox", "error", "processing", "archive"):
        for path in (drop_folder / folder).iterdir():
            status = path.lstat()
            if stat.S_ISREG(status.st_mode) and status.st_nlink == 1:
                assert CANARY not in path.read_text(errors="replace"), path
    for source_file in SourceFile.objects.all():
        assert CANARY not in repr(source_file.__dict__)
    for job in Job.objects.all():
        assert CANARY not in repr(job.__dict__)


def refusal(kind: str) -> list[dict]:
    return [{"row": None, "line": None, "error": f"file: not a regular file ({kind})"}]


@pytest.mark.usefixtures("fails_instead_of_hanging")
def test_only_regular_files_are_read_links_pipes_and_sockets_go_to_error_unread(
    make_file_connector, drop_folder, outside
):
    connector = make_file_connector(pattern="*")  # "*" matches processing/, outbox/, … too
    polling.build_source(connector).prepare_folders()
    before = outside.stat()
    drop(drop_folder, "inside.csv", "note\ninside\n")
    (drop_folder / "passwd.csv").symlink_to(outside)
    (drop_folder / ".kept.csv").write_text("note\nkept\n")  # hidden: never taken itself
    (drop_folder / "alias.csv").symlink_to(drop_folder / ".kept.csv")
    os.link(outside, drop_folder / "hard.csv")
    os.mkfifo(drop_folder / "pipe.csv")
    (drop_folder / "folder.csv").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(drop_folder / "socket.csv"))
    listener.close()

    polling.poll(connector)
    drain()
    polling.poll(connector)

    files = {f.name.split("-", 1)[1]: f for f in SourceFile.objects.all()}
    assert sorted(files) == [
        "alias.csv",
        "hard.csv",
        "inside.csv",
        "passwd.csv",
        "pipe.csv",
        "socket.csv",
    ]
    assert (files["inside.csv"].status, files["inside.csv"].rows_total) == ("done", 1)
    assert Job.objects.get().input_data == {"text": "inside"}
    assert (drop_folder / "outbox" / "inside.csv").read_text().splitlines()[1] == (
        f"inside,{answer('inside')},"
    )
    for name, kind in [
        ("passwd.csv", "a symbolic link"),
        ("alias.csv", "a symbolic link"),
        ("hard.csv", "a hard link: the file has 2 names"),
        ("pipe.csv", "a named pipe"),
        ("socket.csv", "a socket"),
    ]:
        source_file = files[name]
        assert (source_file.status, source_file.errors) == ("failed", refusal(kind)), name
        assert (source_file.rows_total, source_file.size_bytes) == (0, 0)
        assert source_file.finished_at is not None
        assert not (drop_folder / name).exists() and not (drop_folder / name).is_symlink()
    error = drop_folder / "error"
    # The entries themselves were moved, as they were: links still point where they pointed.
    assert os.readlink(error / files["passwd.csv"].name) == str(outside)
    assert os.readlink(error / files["alias.csv"].name) == str(drop_folder / ".kept.csv")
    assert os.path.samefile(error / files["hard.csv"].name, outside)
    assert stat.S_ISFIFO((error / files["pipe.csv"].name).lstat().st_mode)
    assert sorted(p.name for p in drop_folder.iterdir()) == [
        ".kept.csv",
        "archive",
        "error",
        "folder.csv",  # a folder stays: it may be another connector's drop folder
        "outbox",
        "processing",
    ]
    assert list((drop_folder / "outbox").iterdir()) == [drop_folder / "outbox" / "inside.csv"]
    assert_canary_nowhere(drop_folder)
    assert_untouched(outside, before)


def test_a_device_is_moved_to_error_unopened(make_file_connector, drop_folder):
    connector = make_file_connector()
    try:
        os.mknod(drop_folder / "null.csv", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        if os.environ.get("CI") == "true":  # CI runs as root: a skip there would hide a gap
            pytest.fail("CI must test devices, but creating one needs CAP_MKNOD")
        pytest.skip("creating a device needs CAP_MKNOD")

    polling.poll(connector)

    source_file = SourceFile.objects.get()
    assert (source_file.status, source_file.errors) == ("failed", refusal("a device"))
    assert stat.S_ISCHR((drop_folder / "error" / source_file.name).lstat().st_mode)
    assert Job.objects.count() == 0


def test_a_file_swapped_for_a_link_after_the_scan_is_not_followed(
    make_file_connector, drop_folder, outside, monkeypatch
):
    connector = make_file_connector()
    before = outside.stat()
    drop(drop_folder, "swap.csv", "note\nharmless\n")
    drop(drop_folder, "later.csv", "note\nlater\n")
    scan = FileDropSource.ready_files

    def scan_then_swap(self):
        found = scan(self)
        (drop_folder / "swap.csv").unlink()
        (drop_folder / "swap.csv").symlink_to(outside)  # between the scan and the claim
        return found

    monkeypatch.setattr(FileDropSource, "ready_files", scan_then_swap)
    polling.poll(connector)
    monkeypatch.undo()
    drain()
    polling.poll(connector)

    swapped = SourceFile.objects.get(name__endswith="-swap.csv")
    assert (swapped.status, swapped.errors) == ("failed", refusal("a symbolic link"))
    assert os.readlink(drop_folder / "error" / swapped.name) == str(outside)
    assert SourceFile.objects.get(name__endswith="-later.csv").status == "done"
    assert [job.input_data for job in Job.objects.all()] == [{"text": "later"}]
    assert_canary_nowhere(drop_folder)
    assert_untouched(outside, before)


@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_a_claimed_file_swapped_for_a_link_before_it_is_read_is_not_followed(
    make_file_connector, drop_folder, outside, monkeypatch, link
):
    connector = make_file_connector()
    before = outside.stat()
    drop(drop_folder, "swap.csv", "note\nharmless\n")
    claim = FileDropSource.claim

    def claim_then_swap(self, path):
        source_file = claim(self, path)
        claimed = drop_folder / "processing" / source_file.name
        claimed.unlink()
        link(outside, claimed)  # in processing/, after the claim checked the file
        return source_file

    monkeypatch.setattr(FileDropSource, "claim", claim_then_swap)
    polling.poll(connector)
    monkeypatch.undo()
    drain()
    polling.poll(connector)

    swapped = SourceFile.objects.get()
    kind = "a symbolic link" if link is os.symlink else "a hard link: the file has 2 names"
    assert swapped.status == "failed"
    assert swapped.errors == [
        {"row": 1, "line": None, "error": f"file: not a regular file ({kind})"}
    ]
    assert Job.objects.count() == 0
    assert (drop_folder / "error" / swapped.name).is_symlink() == (link is os.symlink)
    assert_canary_nowhere(drop_folder)
    assert_untouched(outside, before)


@pytest.mark.usefixtures("fails_instead_of_hanging")
def test_open_regular_checks_what_it_opened_not_only_what_it_saw(tmp_path, outside, monkeypatch):
    """The entry may change between the look (lstat) and the open: the open itself refuses."""
    from connectors.files.formats import NotRegularFile, open_regular

    regular = tmp_path / "regular.csv"
    regular.write_text("note\n")
    (tmp_path / "link.csv").symlink_to(outside)
    os.mkfifo(tmp_path / "pipe.csv")
    os.link(outside, tmp_path / "hard.csv")
    looks_regular = os.lstat(regular)
    monkeypatch.setattr("connectors.files.formats.os.lstat", lambda path: looks_regular)

    for name, kind in [
        ("link.csv", "a symbolic link"),
        ("pipe.csv", "a named pipe"),
        ("hard.csv", "a hard link: the file has 2 names"),
    ]:
        with pytest.raises(NotRegularFile, match=rf"^not a regular file \({kind}\)$"):
            open_regular(tmp_path / name)
    with open_regular(regular) as handle:
        assert handle.read() == b"note\n"


def test_outputs_are_not_written_through_links_planted_in_outbox(
    make_file_connector, drop_folder, outside
):
    connector = make_file_connector()
    polling.build_source(connector).prepare_folders()
    before = outside.stat()
    (drop_folder / "outbox" / ".bad.csv.tmp").symlink_to(outside)
    (drop_folder / "outbox" / ".bad.csv.errors.csv.tmp").symlink_to(outside)
    drop(drop_folder, "bad.csv", "note,extra\nfine,1\nshort\n")

    source_file = process(connector)

    assert source_file.status == "done"
    output = drop_folder / "outbox" / "bad.csv"
    assert not output.is_symlink()
    assert output.read_text().splitlines() == [
        "note,extra,ai_answer,ai_error",
        f"fine,1,{answer('fine')},",
    ]
    assert (drop_folder / "outbox" / "bad.csv.errors.csv").read_text().splitlines() == [
        "row,line,error",
        '2,3,"expected 2 fields, found 1"',
    ]
    assert sorted(p.name for p in (drop_folder / "outbox").iterdir()) == [
        "bad.csv",
        "bad.csv.errors.csv",
    ]
    assert_untouched(outside, before)


def test_nothing_is_claimed_or_written_when_a_folder_of_the_drop_is_a_link(
    make_file_connector, drop_folder, tmp_path
):
    connector = make_file_connector()
    polling.build_source(connector).prepare_folders()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (drop_folder / "outbox").rmdir()
    (drop_folder / "outbox").symlink_to(elsewhere)  # outputs keep the dropped file's name
    drop(drop_folder, "authorized_keys", "note\nssh-ed25519 AAAA attacker\n")

    assert polling.poll(connector) == 0

    assert list(elsewhere.iterdir()) == []
    assert (drop_folder / "authorized_keys").exists()
    assert SourceFile.objects.count() == 0
    with pytest.raises(ValueError, match="outbox is a symbolic link; it must be a real folder"):
        polling.build_source(connector).test_connection()


def test_a_spool_is_not_opened_through_a_link(tmp_path, outside):
    before = outside.stat()
    spool = Spool(tmp_path / "x.csv.spool.sqlite3")
    (tmp_path / "x.csv.spool.sqlite3-wal").symlink_to(outside)

    with pytest.raises(OSError, match=r"not a regular file \(a symbolic link\)"):
        spool.put_errors([(1, None, "boom")])

    assert_untouched(outside, before)
