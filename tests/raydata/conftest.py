"""Fixtures of the Ray Data tests: a local two-node Ray cluster and a local S3-compatible server (moto), each
started once for the whole folder (starting a cluster takes seconds) and shut down after it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def cluster():
    """Two Ray nodes of 2 CPUs each on this machine, every address on loopback; shut down after the folder."""
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        # Ray's switch for "no multi-machine networking": every node, worker and driver binds 127.0.0.1
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        patch.setenv("OMP_NUM_THREADS", "1")
        # a killed node is declared dead after 2 failed 1 s health checks (Ray's default: 5 of 3 s), so the
        # node-kill test does not wait 15 s for its actors to be restarted
        health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 2}
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                              "_system_config": health})
        try:
            nodes.add_node(num_cpus=2)
            nodes.wait_for_nodes()
            ray.init(address=nodes.address, log_to_driver=False)
            assert len([node for node in ray.nodes() if node["Alive"]]) == 2
            yield nodes
        finally:
            ray.shutdown()
            nodes.shutdown()



@pytest.fixture(scope="package")
def s3():
    """moto's S3 server on 127.0.0.1 (a free port) with one bucket; the standard AWS settings point at it."""
    from pipelines.ray_sources import Storage

    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_REGION": "us-east-1",
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            patch.setenv(name, value)
        storage = Storage.from_env()
        from pyarrow.fs import S3FileSystem

        S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                     endpoint_override=f"{host}:{port}", allow_bucket_creation=True).create_dir("labels")
        filesystem, _ = storage.filesystem("s3://labels")
        try:
            yield storage, filesystem
        finally:
            server.stop()

