"""Prometheus metrics for one node, read from live state at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.consensus_host import ConsensusHost
from adapters.ledger import LedgerHost

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _NodeCollector(Collector):
    def __init__(self, host: ConsensusHost, ledger: LedgerHost | None) -> None:
        self.host = host
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        h = self.host
        r = h.replica
        yield GaugeMetricFamily("stele_consensus_view", "Current Simplex view", value=r.view)
        yield GaugeMetricFamily(
            "stele_consensus_finalized_height", "Height of the last finalized block", value=r.finalized_height
        )
        yield GaugeMetricFamily(
            "stele_p2p_peers_connected", "Authenticated peer links", value=h.peers_connected
        )
        yield GaugeMetricFamily(
            "stele_mempool_size", "Transactions waiting in the mempool", value=len(h.mempool)
        )
        yield GaugeMetricFamily(
            "stele_mempool_bytes", "Bytes waiting in the mempool", value=h.mempool.size_bytes
        )
        yield GaugeMetricFamily(
            "stele_consensus_evidence",
            "Equivocations recorded (conflicting votes by one key)",
            value=len(r.evidence),
        )
        dropped = CounterMetricFamily(
            "stele_dropped_inputs", "Inputs dropped as invalid, by reason", labels=["reason"]
        )
        for reason, count in sorted(h.all_dropped().items()):
            dropped.add_metric([reason], count)
        yield dropped
        events = CounterMetricFamily("stele_consensus_events", "Consensus events, by kind", labels=["kind"])
        for kind, count in sorted(r.stats.items()):
            events.add_metric([kind], count)
        yield events
        p2p = CounterMetricFamily("stele_p2p", "P2P transport counters", labels=["counter"])
        for name, count in sorted(h.p2p.stats.as_dict().items()):
            p2p.add_metric([name], count)
        yield p2p
        repairs = self.ledger.repairs if self.ledger is not None else None
        if repairs is not None:
            yield GaugeMetricFamily(
                "stele_git_repos_needing_repair",
                "Bare repositories on this node that differ from the ledger and wait for a rebuild",
                value=len(repairs),
            )
            counts = CounterMetricFamily(
                "stele_git_repairs", "Repository repairs on this node, by outcome", labels=["outcome"]
            )
            for name, count in sorted(repairs.stats.items()):
                counts.add_metric([name], count)
            yield counts


class NodeMetrics:
    """Owns a per-node registry so several nodes can live in one test process."""

    def __init__(self, host: ConsensusHost, ledger: LedgerHost | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_NodeCollector(host, ledger))
        self.tx_finality = Histogram(
            "stele_tx_finality_seconds",
            "Time from a transaction's submission on this node to its finalization",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.block_finality = Histogram(
            "stele_block_finality_seconds",
            "Time from a block's proposal timestamp to its finalization on this node",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        host.finality_observer = self.tx_finality.observe
        host.block_observer = self.block_finality.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
