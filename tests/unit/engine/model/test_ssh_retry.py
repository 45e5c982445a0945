"""engine.model.ssh_retry and the shared connection's start: which ssh failures are tried again, and when."""

import logging
import re

import pytest

from engine.host.endpoints.ssh import SshConnections, SshEndpoint
from engine.model.errors import EndpointError, UnreachableError
from engine.host.runner import CommandResult
from engine.model.ssh_retry import JITTER, RETRY_DELAYS, retry_delay, retry_message, turned_away

RESET = "kex_exchange_identification: read: Connection reset by peer"

TURNED_AWAY = [
    # sshd's MaxStartups drops an unauthenticated connection: each way ssh reports it.
    pytest.param(255, RESET + "\r\nConnection reset by 127.0.0.5 port 2222\r\n", RESET, id="maxstartups-reset"),
    pytest.param(255, "kex_exchange_identification: Connection closed by remote host\r\n"
                      "Connection closed by 127.0.0.5 port 2222\r\n",
                 "kex_exchange_identification: Connection closed by remote host", id="maxstartups-closed"),
    pytest.param(255, "Connection closed by 10.0.0.1 port 22\r\n", "Connection closed by 10.0.0.1 port 22",
                 id="closed-before-auth"),
    pytest.param(255, "ssh: connect to host backup port 22: Connection refused\r\n",
                 None, id="nothing-listens"),
    # Final answers: another try would get the same.
    pytest.param(255, "root@backup: Permission denied (publickey).\r\n", None, id="refused-key"),
    pytest.param(255, "Connection closed by 10.0.0.1 port 22\r\nroot@backup: Permission denied (publickey).\r\n",
                 None, id="refused-key-after-close"),
    pytest.param(255, "Host key verification failed.\r\n", None, id="host-key"),
    pytest.param(255, "ssh: Could not resolve hostname backup: Name or service not known\r\n", None,
                 id="unknown-host"),
    pytest.param(255, "ssh: connect to host backup port 22: Connection timed out\r\n", None, id="timed-out"),
    # Not ssh's own failure: the remote command ran.
    pytest.param(1, "Connection reset by peer\n", None, id="remote-command-failed"),
    pytest.param(0, "", None, id="success"),
]


@pytest.mark.parametrize("returncode, stderr, reason", TURNED_AWAY)
def test_turned_away(returncode, stderr, reason):
    assert turned_away(returncode, stderr) == reason


@pytest.mark.parametrize("failed_try, fraction, delay", [
    (1, 0.5, 1.0), (2, 0.5, 2.0), (3, 0.5, 4.0),
    (1, 0.0, 1.0 - JITTER), (3, 0.999999, pytest.approx(4.0 * (1 + JITTER))),
    (len(RETRY_DELAYS) + 1, 0.5, None),
])
def test_retry_delay(failed_try, fraction, delay):
    assert retry_delay(failed_try, fraction) == delay


def test_retry_message():
    assert retry_message("backup", RESET, 2.1234, 2) == (
        "ssh to backup refused the connection (%s); retrying in 2.1 s (try 2 of 4)" % RESET)


class _Server:
    """Answers `ssh -G` and turns the first `refusals` connections away with `stderr`."""

    def __init__(self, refusals, stderr=RESET):
        self.refusals = refusals
        self.stderr = stderr
        self.masters = 0
        self.pauses = []

    def run(self, argv, input_text=None):
        if "-G" in argv:
            return CommandResult(argv, 0, "ciphers aes256-ctr\n", "")
        if "-N" in argv:
            self.masters += 1
            if self.masters <= self.refusals:
                return CommandResult(argv, 255, "", self.stderr + "\n")
        return CommandResult(argv, 0, "", "")

    def pause(self, seconds):
        self.pauses.append(seconds)


@pytest.mark.parametrize("refusals, stderr, masters, retried", [
    pytest.param(0, RESET, 1, 0, id="first-try"),
    pytest.param(2, RESET, 3, 2, id="third-try"),
    pytest.param(9, RESET, 4, 3, id="gives-up-after-four"),
    pytest.param(9, "root@backup: Permission denied (publickey).", 1, 0, id="refused-key-once"),
])
def test_the_shared_connection_is_tried_again_while_turned_away(caplog, refusals, stderr, masters, retried):
    server = _Server(refusals, stderr)
    with caplog.at_level(logging.WARNING, logger="btrfs_backup"):
        with SshConnections(server, [SshEndpoint("backup", "/srv")]):
            pass
    assert server.masters == masters
    assert len(server.pauses) == retried
    for number, (seconds, low) in enumerate(zip(server.pauses, RETRY_DELAYS), start=2):
        assert low * (1 - JITTER) <= seconds <= low * (1 + JITTER)
        assert "refused the connection (%s); retrying in %.1f s (try %d of 4)" % (RESET, seconds, number) \
            in caplog.text
    assert caplog.text.count("retrying in") == retried


def test_a_user_who_sets_up_connection_sharing_gets_no_master():
    server = _Server(0)
    with SshConnections(server, [SshEndpoint("backup", "/srv", ssh_options=["ControlMaster=no"])]):
        pass
    assert server.masters == 0


@pytest.mark.parametrize("refusals, stderr, fails_fast", [
    pytest.param(0, RESET, False, id="opened"),
    pytest.param(2, RESET, False, id="opened-on-the-third-try"),
    pytest.param(9, RESET, True, id="turned-away-four-times"),
    pytest.param(9, "Connection timed out during banner exchange", True, id="timed-out"),
    pytest.param(9, "root@backup: Permission denied (publickey).", True, id="refused-key"),
])
def test_a_host_whose_shared_connection_failed_is_not_asked_again_in_that_run(refusals, stderr, fails_fast):
    """A host that timed out once is not given another 20 s per command: the run's commands for
    it fail at once with ssh's first answer (a silent host is contacted once per run)."""
    server = _Server(refusals, stderr)
    endpoint = SshEndpoint("backup", "/srv")
    with SshConnections(server, [endpoint]):
        masters = server.masters
        if fails_fast:
            with pytest.raises(UnreachableError, match=re.escape(stderr)):
                endpoint.run_batch(server, [(["btrfs", "--version"], True)])
        else:
            with pytest.raises(EndpointError, match="ended early"):  # the stand-in prints no markers
                endpoint.run_batch(server, [(["btrfs", "--version"], True)])
        assert server.masters == masters
