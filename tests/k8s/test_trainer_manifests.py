"""k8s/trainer: Kubeflow Trainer pinned to TRAINER_VERSION, and RBAC that grants the pipeline's service account
exactly the TrainJob verbs the multi-node train task uses (read off a run against the fake Kubernetes API)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_k8s_manifests import K8S, TRAINER_BASES, by_kind, render, rendered_stack

from hybridmi.cluster import TRAINER_VERSION
from hybridmi.task.trainjob.manifest import GROUP, PLURAL

TRAINJOB_TESTS = Path(__file__).resolve().parents[1] / "task" / "trainjob"
# kubeflow/trainer release tags seen in the repository (snapshot of 2026-08-21): v2.3.0 exists only as candidates.
UPSTREAM_TRAINER_TAGS = ("v2.0.0", "v2.0.1", "v2.1.0", "v2.2.0", "v2.2.1")
ROLE = "hybridmi-trainjob-launcher"
# KFP's pipeline pods' service accounts: standalone (namespace kubeflow; k8s/trainer/rbac lets it create TrainJobs)
# and multi-user (each profile namespace; bound to the same ClusterRole by a RoleBinding, k8s/README.md).
PIPELINE_RUNNER_SA, PROFILE_RUNNER_SA = "pipeline-runner", "default-editor"
HTTP_VERBS = {"GET": "get", "POST": "create", "DELETE": "delete"}


def test_trainer__pinned_to_an_upstream_release_the_vendored_crd_comes_from():
    assert TRAINER_VERSION in UPSTREAM_TRAINER_TAGS
    for directory, base in TRAINER_BASES.items():
        resources = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
        assert resources == [f"{base}?ref={TRAINER_VERSION}"]
    source = json.loads((TRAINJOB_TESTS / "trainer_crd" / "SOURCE.json").read_text())
    assert source["tag"] == TRAINER_VERSION
    assert f"`{TRAINER_VERSION}`" in (K8S / "README.md").read_text()


def granted(objs: list[dict]) -> dict[str, set[str]]:
    """Service account ("namespace/name") -> TrainJob verbs its RoleBindings grant."""
    roles = {**by_kind(objs, "ClusterRole"), **by_kind(objs, "Role")}
    out: dict[str, set[str]] = {}
    for binding in by_kind(objs, "RoleBinding").values():
        rules = roles[binding["roleRef"]["name"]]["rules"]
        verbs = {v for r in rules if GROUP in r["apiGroups"] and PLURAL in r["resources"] for v in r["verbs"]}
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount":
                out.setdefault(f"{subject['namespace']}/{subject['name']}", set()).update(verbs)
    return out


def test_rbac__the_standalone_pipeline_runner_may_do_what_the_train_task_does(monkeypatch):
    monkeypatch.syspath_prepend(str(TRAINJOB_TESTS))
    from fake_kube_api import COMPLETE, FAILED, FakeKubeAPI, Scripted, sample_trainjob

    from hybridmi.task.trainjob.api import TrainJobs
    from hybridmi.task.trainjob.launch import run_trainjob

    with FakeKubeAPI(Scripted([FAILED], [COMPLETE])) as kube:  # a failed first attempt, replaced by the retry
        jobs = TrainJobs(kube.api_client(), "kubeflow")
        try:
            run_trainjob(jobs, sample_trainjob(), poll_s=0.01)
        except RuntimeError:
            pass
        run_trainjob(jobs, sample_trainjob(), poll_s=0.01)
        used = {HTTP_VERBS[r.method] for r in kube.requests}
    assert used == {"get", "create", "delete"}
    rendered = render(K8S / "trainer" / "rbac")
    assert used <= granted(rendered)[f"kubeflow/{PIPELINE_RUNNER_SA}"]
    assert granted(rendered) == granted(
        [o for o in rendered_stack() if o["kind"] in ("ClusterRole", "RoleBinding") and o["metadata"]["name"] == ROLE]
    )  # the k8s/ stack applies it


def test_rbac__the_role_grants_trainjobs_only_and_the_readme_binds_it_for_profile_namespaces():
    role = by_kind(render(K8S / "trainer" / "rbac"), "ClusterRole")[ROLE]
    assert all(r["apiGroups"] == [GROUP] and r["resources"] == [PLURAL] for r in role["rules"])
    readme = (K8S / "README.md").read_text()
    assert f"--clusterrole={ROLE}" in readme and f":{PROFILE_RUNNER_SA}" in readme
