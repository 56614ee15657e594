"""A TrainJob's phase from its status as Trainer v2.2 writes it (conditions Suspended/Complete/Failed, jobsStatus)."""

from __future__ import annotations

import pytest
from fake_kube_api import COMPLETE, CREATED, FAILED, RUNNING, condition, jobs_status

from hybridmi.task.trainjob.status import trainjob_state

DEADLINE = condition("Failed", "DeadlineExceeded", "TrainJob exceeded its activeDeadlineSeconds")


@pytest.mark.parametrize(
    "status, phase",
    [
        (None, "Created"),
        (CREATED, "Created"),
        ({"jobsStatus": jobs_status()}, "Created"),
        (RUNNING, "Running"),
        ({"jobsStatus": jobs_status(active=1)}, "Running"),
        (
            {"conditions": [condition("Suspended", "Suspended", "TrainJob is suspended")], "jobsStatus": jobs_status()},
            "Suspended",
        ),
        ({"conditions": [{**condition("Suspended", "Resumed", "resumed"), "status": "False"}], **RUNNING}, "Running"),
        (COMPLETE, "Complete"),
        (FAILED, "Failed"),
        ({"conditions": [COMPLETE["conditions"][0], DEADLINE]}, "Failed"),  # a failure is never reported as success
    ],
)
def test_state__phase_from_conditions_and_child_jobs(status, phase):
    assert trainjob_state({"status": status} if status is not None else {}).phase == phase


def test_state__failed_carries_reason_and_message_in_one_line():
    obj = {"status": {"conditions": [{**DEADLINE, "message": "TrainJob exceeded\n its deadline"}]}}
    state = trainjob_state(obj)
    assert state.phase == "Failed" and state.reason == "DeadlineExceeded: TrainJob exceeded its deadline"
    assert "\n" not in state.describe()
