"""TLS on gRPC and the REST API with lab certificates from `edgesync certs`: a client that trusts
the CA gets in, a plaintext client or one trusting another CA does not."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from cloud_trainer.app import CloudTrainer
from edgesync.config import CloudConfig, ConfigError, EdgeConfig, parse_config
from edgesync.fleet_status import StatusError, fetch_fleet
from edgesync.tls import make_lab_certificates
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def test_grpc_and_the_api_speak_tls_to_clients_that_trust_the_ca(tmp_path: Path) -> None:
    ca, cert, key = make_lab_certificates(tmp_path / "certs", ["localhost", "127.0.0.1"])
    other_ca, _, _ = make_lab_certificates(tmp_path / "other", ["localhost"])
    cfg = parse_config(
        CloudConfig,
        {
            "listen": "127.0.0.1:0",
            "api": {"listen": "127.0.0.1:0", "token": "api-token-0123456789"},
            "data_dir": str(tmp_path / "cloud"),
            "workers": 0,
            "security": {"tls_cert": str(cert), "tls_key": str(key)},
        },
    )
    cloud = CloudTrainer(cfg)
    port = cloud.start()
    try:
        trusted = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca.read_bytes()))
        reply = pb_grpc.EdgeSyncStub(trusted).Register(pb.RegisterRequest(edge_id="cam-1"), timeout=10)
        assert reply.heartbeat_interval_s > 0
        for channel in (
            grpc.insecure_channel(f"127.0.0.1:{port}"),  # plaintext to a TLS port
            grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(other_ca.read_bytes())),
        ):
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.EdgeSyncStub(channel).Register(pb.RegisterRequest(edge_id="cam-1"), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE

        # the edge agent builds its TLS channel from cloud.tls_ca
        from edge_agent.agent import EdgeAgent

        edge_cfg = parse_config(
            EdgeConfig,
            {
                "edge_id": "cam-2",
                "cloud": {"address": f"127.0.0.1:{port}", "tls_ca": str(ca)},
                "queue": {"spill_dir": str(tmp_path / "spill")},
                "model_dir": str(tmp_path / "models"),
                "sink": None,
            },
        )
        agent = EdgeAgent(edge_cfg)
        agent.stub.Register(pb.RegisterRequest(edge_id="cam-2"), timeout=10)
        agent.channel.close()

        assert cloud.dashboard_url().startswith("https://")
        api = f"https://127.0.0.1:{cloud.api_port}"
        health = httpx.get(f"{api}/healthz", verify=str(ca), timeout=10)
        assert health.json()["ok"] is True
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{api}/healthz", verify=str(other_ca), timeout=10)
        fleet = fetch_fleet(api, "api-token-0123456789", ca=ca)
        assert [e["edge_id"] for e in fleet["edges"]] == ["cam-1", "cam-2"]
        with pytest.raises(StatusError, match="cannot reach"):
            fetch_fleet(api, "api-token-0123456789", ca=other_ca)
    finally:
        cloud.stop()


def test_tls_settings_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="go together"):
        parse_config(CloudConfig, {"security": {"tls_cert": str(tmp_path / "server.pem")}})
    ca, _, _ = make_lab_certificates(tmp_path / "certs", ["localhost"])
    with pytest.raises(ConfigError, match="exists"):
        make_lab_certificates(tmp_path / "certs", ["localhost"])
    assert parse_config(EdgeConfig, {"cloud": {"tls_ca": str(ca)}}).cloud.tls_ca == ca
