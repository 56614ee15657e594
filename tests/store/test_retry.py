"""The backoff schedule and the retry loop, with known answers."""

from __future__ import annotations

import pytest

from hybridmi.store.s3 import RetryPolicy, TransientError, call_with_retry


def test_retry_policy__delays_double_then_cap():
    policy = RetryPolicy(attempts=7, base_delay_s=0.5, max_delay_s=4.0)
    assert [policy.delay_s(k) for k in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base_delay_s": -1.0}, {"max_delay_s": -0.1}])
def test_retry_policy__bad_values_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="retry"):
        RetryPolicy(**kwargs)


def flaky(failures: int):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise TransientError(f"failure {len(calls)}")
        return "ok"

    return fn, calls


def test_call_with_retry__succeeds_after_transient_failures_with_backoff_sleeps():
    fn, calls = flaky(2)
    sleeps = []
    assert call_with_retry(fn, policy=RetryPolicy(attempts=5, base_delay_s=0.1), what="op", sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and sleeps == [0.1, 0.2]


def test_call_with_retry__gives_up_after_the_last_attempt():
    fn, calls = flaky(10)
    sleeps = []
    with pytest.raises(TransientError, match="failure 3"):
        call_with_retry(fn, policy=RetryPolicy(attempts=3, base_delay_s=1.0), what="op", sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_call_with_retry__other_errors_are_not_retried():
    calls = []

    def fn():
        calls.append(1)
        raise PermissionError("denied")

    with pytest.raises(PermissionError):
        call_with_retry(fn, policy=RetryPolicy(attempts=5), what="op", sleep=lambda s: None)
    assert len(calls) == 1


def test_call_with_retry__no_try_starts_after_the_deadline():
    now = [0.0]

    def ten_second_timeout():
        now[0] += 10.0
        raise TransientError("read timed out")

    sleep = lambda s: now.__setitem__(0, now[0] + s)
    with pytest.raises(TransientError) as err:
        policy = RetryPolicy(attempts=5, base_delay_s=0.5, deadline_s=15.0)
        call_with_retry(ten_second_timeout, policy=policy, what="op", sleep=sleep, clock=lambda: now[0])
    assert err.value.attempts == 2 and now[0] == 20.5  # tries at 0 s and 10.5 s; a third would start at 21.5 s
