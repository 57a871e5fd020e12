import os
import time

from f5_worker.lease import Lease


def test_one_holder_at_a_time_and_release(tmp_path):
    first, second = Lease(tmp_path / "x.lease"), Lease(tmp_path / "x.lease")
    assert first.try_acquire()
    assert not second.try_acquire() and second.busy()
    first.release()
    assert second.try_acquire()


def test_lease_of_a_dead_holder_goes_stale_and_is_taken_over(tmp_path):
    path = tmp_path / "x.lease"
    dead = Lease(path, stale_after_s=5)
    assert dead.try_acquire()
    old = time.time() - 60
    os.utime(path, (old, old))  # the holder stopped refreshing: it died
    taker = Lease(path, stale_after_s=5)
    assert not taker.busy() and taker.try_acquire()
    dead.release()  # a late release by the old holder must not remove the new holder's lease
    assert path.exists()
