#!/usr/bin/env bash
# End to end on a local kind cluster: KFP (pinned), hybridmi's storage Secret and monitoring, the CPU-only image
# loaded into the workers, the smoke pipeline submitted (no accelerators, the "GPU" worker's label as node
# selector), then success, artifacts in object storage and metrics in Prometheus asserted; on failure the
# pods' state and logs are dumped.
#
#   scripts/kind-e2e.sh            # needs docker, kind, kubectl, curl, the project venv, and internet
#   scripts/kind-e2e.sh --dry-run  # print every step, run nothing
#   scripts/kind-e2e.sh --keep     # leave the cluster up (kind delete cluster --name hybridmi)
#
# Env: KIND_CLUSTER (hybridmi), PYTHON (.venv/bin/python, else python3), HYBRIDMI (the CLI beside PYTHON),
# TORCH_VARIANT (cpu), IMAGE (an already-built image of TORCH_VARIANT: no build), PIPELINE_IMAGE (the tag
# docker/build.sh gives this checkout), RUN_TIMEOUT_S (3600), READY_TIMEOUT_S (900), ARTIFACT_BUCKET (mlpipeline).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DRY_RUN=0 KEEP=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "kind-e2e: unknown argument $arg (use --dry-run, --keep)" >&2; exit 2 ;;
    esac
done

CLUSTER="${KIND_CLUSTER:-hybridmi}"
[ -n "${PYTHON:-}" ] || if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
HYBRIDMI="${HYBRIDMI:-$(dirname "$(command -v "$PYTHON" || echo "$PYTHON")")/hybridmi}"
# TORCH_VARIANT cpu: kind's nodes have no GPU; the CPU-only image is a fraction of the CUDA one on each node's disk.
: "${RUN_TIMEOUT_S:=3600}" "${READY_TIMEOUT_S:=900}" "${ARTIFACT_BUCKET:=mlpipeline}" "${TORCH_VARIANT:=cpu}"
RUN_ID="kind-e2e-$(date +%s)"
PIPELINE_IMAGE="${PIPELINE_IMAGE:-$("$(command -v "$PYTHON" || echo python3)" components/image.py --torch-variant "$TORCH_VARIANT")}"
# The image goes to the workers of k8s/kind/cluster.yaml only (kind names them <cluster>-worker, -worker2, ...).
WORKER_COUNT="$(grep -cE '^[[:space:]]*- role: worker[[:space:]]*$' k8s/kind/cluster.yaml || true)"
WORKER_NODES="$CLUSTER-worker"
for ((i = 2; i <= WORKER_COUNT; i++)); do WORKER_NODES+=",$CLUSTER-worker$i"; done
# The KFP UI serves the API too: one port-forward.
KFP_HOST="http://localhost:8080" PROMETHEUS_URL="http://localhost:9090" S3_LOCAL="localhost:9000"
# kind's "GPU" worker's label (hybridmi/cluster.py GPU_NODE_LABELS): no default selects it, the run must.
SUBMIT_FLAGS=(--host "$KFP_HOST" --config configs/smoke.yaml
    --set "monitoring.pushgateway_url=http://pushgateway.monitoring.svc:9091" --set "monitoring.run_id=$RUN_ID"
    --accelerator-type "" --accelerator-count "" --image "$PIPELINE_IMAGE"
    --param 'gpu_node_selector={"hybridmi.io/accelerator": "nvidia-gpu"}'
    --experiment kind-e2e --run-name "$RUN_ID" --wait --timeout "$RUN_TIMEOUT_S")
FORWARD_PIDS=() WORK="$(mktemp -d)"

step() { echo; echo "==> $*"; }
run() {  # print the command shell-quoted; run it unless --dry-run
    printf '+'; printf ' %q' "$@"; printf '\n'
    [ "$DRY_RUN" = 1 ] || "$@"
}
run_sh() {  # the same for a shell pipeline given as one string
    echo "+ $1"
    [ "$DRY_RUN" = 1 ] || bash -c "set -euo pipefail; $1"
}
forward() {  # namespace service local:remote
    echo "+ kubectl -n $1 port-forward svc/$2 $3 &"
    [ "$DRY_RUN" = 1 ] && return 0
    kubectl -n "$1" port-forward "svc/$2" "$3" >"$WORK/forward-$2.log" 2>&1 &
    FORWARD_PIDS+=("$!")
}
check_torch_variant() {  # image: its io.hybridmi.torch-variant label (docker/Dockerfile) is TORCH_VARIANT
    local found
    found="$(docker image inspect --format '{{ index .Config.Labels "io.hybridmi.torch-variant" }}' "$1")"
    [ "$found" = "$TORCH_VARIANT" ] || { echo "kind-e2e: image $1 is torch '$found', not TORCH_VARIANT $TORCH_VARIANT" >&2; return 1; }
}
retry() {  # attempts delay command...
    local attempts="$1" delay="$2" i
    shift 2
    if [ "$DRY_RUN" = 1 ]; then run "$@"; return 0; fi
    for ((i = 1; i <= attempts; i++)); do
        printf '+ (try %d/%d)' "$i" "$attempts"; printf ' %q' "$@"; printf '\n'
        if "$@"; then return 0; fi
        sleep "$delay"
    done
    echo "kind-e2e: gave up after $attempts tries: $*" >&2
    return 1
}

secret_value() {  # key of the hybridmi-store Secret (keys: hybridmi/cluster.py STORE_SECRET_KEYS)
    kubectl -n kubeflow get secret hybridmi-store -o jsonpath="{.data.$1}" | base64 -d
}
bucket_has_artifacts() {  # bucket: at least one finished hybridmi artifact (its artifact.json sidecar)
    AWS_ACCESS_KEY_ID="$(secret_value accesskey)" AWS_SECRET_ACCESS_KEY="$(secret_value secretkey)" \
    "$PYTHON" - "$S3_LOCAL" "$1" <<'PY'
import os, sys
from minio import Minio
endpoint, bucket = sys.argv[1:3]
client = Minio(endpoint, access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], secure=False)
names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
sidecars = [n for n in names if n.endswith("artifact.json")]
print(f"{len(names)} objects, {len(sidecars)} artifact sidecars in {bucket}")
sys.exit(0 if sidecars else f"no hybridmi artifacts (artifact.json) in bucket {bucket}")
PY
}
prometheus_has_data() {  # PromQL query: non-empty instant result
    curl -fsS --get "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=$1" \
        | "$PYTHON" -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r); sys.exit(0 if r else 1)'
}

dump_state() {
    echo "==> kind-e2e failed; cluster state and logs follow" >&2
    kubectl get nodes -o wide --show-labels || true
    kubectl get pods -A -o wide || true
    kubectl -n kubeflow get workflows 2>/dev/null || true
    for ns in kubeflow monitoring; do
        for pod in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
            echo "---- $ns $pod" >&2
            kubectl -n "$ns" describe "$pod" | tail -n 30 || true
            kubectl -n "$ns" logs "$pod" --all-containers --prefix --tail=200 || true
        done
    done
    tail -n 50 "$WORK"/*.log 2>/dev/null || true
}

cleanup() {
    local status=$?
    if [ "$DRY_RUN" = 0 ]; then
        [ "$status" = 0 ] || dump_state
        for pid in "${FORWARD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
        if [ "$KEEP" = 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
            kind delete cluster --name "$CLUSTER" || true
        fi
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

[ "$DRY_RUN" = 1 ] || for tool in docker kind kubectl curl "$PYTHON" "$HYBRIDMI"; do
    command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is not installed" >&2; exit 1; }
done

step "1/9 create the kind cluster (control plane, CPU worker, labelled+tainted 'GPU' worker)"
run kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 180s

step "2/9 install Kubeflow Pipelines (pinned in k8s/kfp to the SDK version)"
run kubectl apply -k k8s/kfp/cluster-scoped
run kubectl wait --for condition=established --timeout=120s crd --all
retry 3 10 kubectl apply -k k8s/kfp/env

step "3/9 install hybridmi's object-store Secret and the monitoring stack (k8s/)"
run kubectl apply -k k8s
# The Secret's credentials become the ones KFP's object store was deployed with.
run_sh "kubectl -n kubeflow create secret generic hybridmi-store --from-literal=store=s3://mlpipeline/hybridmi \
--from-literal=endpoint=http://seaweedfs.kubeflow.svc.cluster.local:9000 --from-literal=secure=false \
--from-literal=accesskey=\"\$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)\" \
--from-literal=secretkey=\"\$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)\" \
--dry-run=client -o yaml | kubectl apply -f -"

step "4/9 wait for KFP and monitoring to be ready"
run kubectl -n kubeflow wait --for=condition=available deployment --all --timeout="${READY_TIMEOUT_S}s"
run kubectl -n monitoring wait --for=condition=available deployment --all --timeout=300s

step "5/9 build the $TORCH_VARIANT project image and load it into the worker nodes (its immutable tag)"
case "$PIPELINE_IMAGE" in
    ""|*:latest|*:) echo "kind-e2e: pipeline image '$PIPELINE_IMAGE' needs a non-latest tag (kind nodes would try to pull it)" >&2; exit 1 ;;
    *:*) ;;
    *) echo "kind-e2e: pipeline image $PIPELINE_IMAGE has no tag" >&2; exit 1 ;;
esac
if [ "${WORKER_COUNT:-0}" -lt 1 ]; then echo "kind-e2e: k8s/kind/cluster.yaml has no worker node" >&2; exit 1; fi
if [ -z "${IMAGE:-}" ]; then  # docker/build.sh tags $PIPELINE_IMAGE; the FID stage needs the weights
    run env TORCH_VARIANT="$TORCH_VARIANT" FID_WEIGHTS="${FID_WEIGHTS:-download}" docker/build.sh
    IMAGE="$PIPELINE_IMAGE"
fi
run check_torch_variant "$IMAGE"
[ "$IMAGE" = "$PIPELINE_IMAGE" ] || run docker tag "$IMAGE" "$PIPELINE_IMAGE"
run kind load docker-image "$PIPELINE_IMAGE" --name "$CLUSTER" --nodes "$WORKER_NODES"

step "6/9 port-forward the KFP API, Prometheus and the object store"
forward kubeflow ml-pipeline-ui 8080:80
forward monitoring prometheus 9090:9090
forward kubeflow seaweedfs 9000:9000
retry 30 2 curl -fsS -o /dev/null "$KFP_HOST/apis/v2beta1/healthz"
retry 30 2 curl -fsS -o /dev/null "$PROMETHEUS_URL/-/ready"

step "7/9 submit the smoke pipeline and wait for it (timeout ${RUN_TIMEOUT_S}s)"
run_sh "timeout $((RUN_TIMEOUT_S + 60)) $HYBRIDMI submit $(printf '%q ' "${SUBMIT_FLAGS[@]}") | tee $WORK/submit.log"
run_sh "grep -q SUCCEEDED $WORK/submit.log"

step "8/9 assert the run's artifacts are in object storage (bucket $ARTIFACT_BUCKET)"
run bucket_has_artifacts "$ARTIFACT_BUCKET"

step "9/9 assert the run's metrics reached Prometheus (via the Pushgateway)"
retry 10 6 prometheus_has_data "hybridmi_train_steps_total{run_id=\"$RUN_ID\"}"
retry 10 6 prometheus_has_data "hybridmi_stage_last_success_timestamp_seconds{run_id=\"$RUN_ID\",stage=\"train\"}"

echo
echo "kind-e2e: OK (run $RUN_ID)"
