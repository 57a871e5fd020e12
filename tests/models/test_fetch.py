"""A hub download's failure, as data: whether the hub was unreachable is decided by the exception's type."""

import pytest
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

from f5_worker.errors import HubUnreachable
from f5_worker.models.fetch import classify, describe


def raised(exc: BaseException, cause: BaseException | None) -> BaseException:
    try:
        raise exc from cause
    except BaseException as caught:  # noqa: BLE001
        return caught


@pytest.mark.parametrize("exc, unreachable, text", [
    # what hf_hub_download raises when the file is not cached and the hub cannot be reached
    (raised(LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub"),
            ConnectionRefusedError("[Errno 111] Connection refused")),
     True, "hub unreachable (ConnectionRefusedError: [Errno 111] Connection refused)"),
    (raised(LocalEntryNotFoundError("not cached"), TimeoutError("timed out")), True, "hub unreachable (TimeoutError: timed out)"),
    (HubUnreachable("http://127.0.0.1:9", "ConnectError: refused"), True,
     "hub unreachable at http://127.0.0.1:9 (ConnectError: refused)"),
    (ConnectionResetError("reset by peer"), True, "hub unreachable (ConnectionResetError: reset by peer)"),
    # offline mode: the same type, without a cause -- the hub was not asked, not unreachable
    (LocalEntryNotFoundError("outgoing traffic has been disabled"), False,
     "LocalEntryNotFoundError: outgoing traffic has been disabled"),
    (EntryNotFoundError("404 Client Error: Entry Not Found"), False, "EntryNotFoundError: 404 Client Error: Entry Not Found"),
    # words are not a type: a message that says "hub unreachable" decides nothing
    (RuntimeError("hub unreachable (made up)\nsecond line"), False, "RuntimeError: hub unreachable (made up)"),
])
def test_classify(exc, unreachable, text):
    failure = classify(exc)
    assert (failure.unreachable, failure.text) == (unreachable, text)
    assert describe(exc) == text
