#!/usr/bin/env python3
"""Goodput on spot: replay interruption traces against three recovery strategies.

A model, not a measurement: every input is a parameter with a default (printed with the output),
the control-plane latencies come from the spot drills (hack/bench/results/spot_drills.json) and
the physical ones (node provisioning, container start, storage bandwidth) are stated assumptions.

Strategies (one gang of `nodes` spot nodes, `gpus_per_node` GPUs each):

  kubetrain          the notice triggers an emergency checkpoint of the current step (drills:
                     request and commit well under a second plus the save itself), the gang
                     restarts as soon as the replacement node is Ready; a notice that never
                     comes (notice_miss_prob) loses the work since the last periodic checkpoint.
                     Periodic saves run in the background (stall = the copy to host memory).
  kubetrain-elastic  the same, and when a reclaim leaves fewer nodes than the gang needs for
                     longer than elastic_grace_s, it continues on the survivors (>= min_nodes)
                     and grows back through a coordinated checkpoint when capacity returns.
  periodic-restart   what the Training Operator or SageMaker managed spot give: nothing happens
                     on the notice; the node dies at the end of it, the work since the last
                     periodic checkpoint is lost, the job restarts after failure detection
                     once the whole gang fits again. Periodic saves are synchronous.
  reprovision        SkyPilot-style: the cluster is torn down after the preemption is detected
                     and a new one is launched wherever capacity exists (not blocked by the
                     reclaimed pool), then resumes from the last periodic checkpoint (on S3).

Traces: `poisson` (one node per interruption, its replacement can be launched at once) and
`bursty` (an interruption takes burst_min_nodes..nodes nodes at once and that capacity is gone
for an exponentially distributed outage). The x axis is interruptions per hour hitting the gang.

Simplifications (also printed): linear scaling with node count while shrunk; an interruption
that arrives while the gang is down is dropped; a shrunk gang grows back only to full size, once
every reclaimed node is back; nodes that survive a reclaim stay billed while the gang waits
(hold_survivors); a reprovisioned cluster is billed from when its instances are up.

    .venv/bin/python hack/bench/goodput_sim.py --rates 0.5 --out hack/bench/results/goodput_sim

Replay mode: `--replay TRACE.json` simulates one given run instead ({"horizon_s", "strategy",
"params": {NAME: VALUE}, "interruptions": [{"at", "nodes", "outage", "noticed"}]}); the spot
drills write such a trace of a real run on the local cluster, with its measured goodput beside
it (hack/bench/results/goodput_real_trace.json), to check the model against reality:

    .venv/bin/python hack/bench/goodput_sim.py --replay hack/bench/results/goodput_real_trace.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DRILLS = ROOT / "hack/bench/results/spot_drills.json"
STRATEGIES = ("kubetrain", "kubetrain-elastic", "periodic-restart", "reprovision")
TRACES = ("poisson", "bursty")


@dataclass(frozen=True)
class Params:
    """Every assumption of the model; the docstring of each group says where it comes from."""

    # The job: a 4 x p5.48xlarge gang training an ~8B-parameter model (bf16 weights, fp32 master
    # weights and Adam moments: 14 bytes per parameter, sharded over the gang).
    nodes: int = 4
    gpus_per_node: int = 8
    min_nodes: int = 2
    checkpoint_gb: float = 112.0
    # Storage (assumed): FSx for Lustre per-node write/read, S3 per-node read, GPU->host copy.
    write_gbps_per_node: float = 1.0
    read_gbps_per_node: float = 2.0
    s3_read_gbps_per_node: float = 0.5
    host_copy_gbps_per_node: float = 20.0
    checkpoint_interval_s: float = 1800.0  # periodic saves, every strategy alike
    # Measured by the spot drills on the local cluster (overridden from spot_drills.json).
    notice_to_request_s: float = 0.152
    request_to_commit_overhead_s: float = 0.065  # drills' commit minus request: the toy's save
    commit_to_gang_running_s: float = 0.331  # drills' running minus commit: delete + reschedule
    lost_steps_with_notice: float = 0.0
    step_s: float = 1.0  # a training step, for lost steps
    # EC2 and Kubernetes (assumed, from the reference notes): 2-minute notice, best effort.
    notice_s: float = 120.0
    notice_miss_prob: float = 0.02
    provision_s: float = 120.0  # replacement spot node launched on the notice, Ready after this
    startup_s: float = 120.0  # image on a warm node cache, process start, NCCL init, dataloader
    detect_no_notice_s: float = 45.0  # node lost silently: NotReady after the monitor grace
    baseline_detect_s: float = 60.0  # periodic-restart: pods failed -> job controller restarts
    reprovision_s: float = 900.0  # reprovision: detect, launch elsewhere, setup, cold image pull
    elastic_grace_s: float = 120.0
    # Capacity: after a poisson reclaim a replacement can be launched at once; after a burst the
    # reclaimed capacity is gone for an exponential outage with this mean.
    poisson_outage_s: float = 0.0
    burst_outage_s: float = 3600.0
    burst_min_nodes: int = 2
    hold_survivors: bool = True
    # Money: spot at this fraction of the on-demand price; cost is per useful GPU-hour in units of
    # the on-demand GPU-hour price.
    spot_price_fraction: float = 0.30
    # Monte Carlo.
    horizon_h: float = 2000.0
    seeds: int = 5

    def save_s(self, nodes: int) -> float:
        return self.checkpoint_gb / (nodes * self.write_gbps_per_node)

    def stall_s(self, nodes: int) -> float:
        return self.checkpoint_gb / (nodes * self.host_copy_gbps_per_node)

    def restore_s(self, nodes: int, s3: bool = False) -> float:
        per_node = self.s3_read_gbps_per_node if s3 else self.read_gbps_per_node
        return self.checkpoint_gb / (nodes * per_node)


def with_drills(params: Params, path: Path = DRILLS) -> Params:
    """The control-plane latencies from the drills' p50s, where the file has them."""
    try:
        drills = json.loads(path.read_text())
        request = drills["notice_to_request"]["p50_s"]
        commit = drills["notice_to_commit"]["p50_s"]
        running = drills["notice_to_running"]["p50_s"]
        lost = drills.get("lost_steps_per_drill") or [0]
    except (OSError, KeyError, ValueError):
        return params
    return dataclasses.replace(
        params,
        notice_to_request_s=request,
        request_to_commit_overhead_s=max(0.0, commit - request),
        commit_to_gang_running_s=max(0.0, running - commit),
        lost_steps_with_notice=sum(lost) / len(lost),
    )


@dataclass(frozen=True)
class Interruption:
    at: float  # seconds
    nodes: int  # how many of the gang's nodes it reclaims
    outage: float  # seconds before that capacity can be launched again
    noticed: bool  # the 2-minute notice arrived


def trace(kind: str, rate_per_h: float, params: Params, rng: random.Random) -> list[Interruption]:
    """Interruptions over the horizon: Poisson arrivals at `rate_per_h`, shaped by `kind`."""
    out: list[Interruption] = []
    t, horizon = 0.0, params.horizon_h * 3600
    while rate_per_h > 0:
        t += rng.expovariate(rate_per_h / 3600)
        if t >= horizon:
            break
        noticed = rng.random() >= params.notice_miss_prob
        if kind == "poisson":
            out.append(Interruption(t, 1, params.poisson_outage_s, noticed))
        elif kind == "bursty":
            size = rng.randint(min(params.burst_min_nodes, params.nodes), params.nodes)
            out.append(Interruption(t, size, rng.expovariate(1 / params.burst_outage_s), noticed))
        else:
            raise ValueError(f"trace {kind!r}: use one of {TRACES}")
    return out


@dataclass
class Run:
    """One strategy replaying one trace. Work is in full-gang seconds of training."""

    params: Params
    strategy: str
    t: float = 0.0
    nodes: int = 0
    work: float = 0.0
    committed: float = 0.0  # work held by the newest committed checkpoint
    billed: float = 0.0  # node-seconds paid for
    lost: float = 0.0
    next_save: float = 0.0
    pending: tuple[float, float] | None = None  # background save: (work it holds, commit time)
    returns: list[float] = field(default_factory=list)  # when reclaimed nodes can be back
    grow_at: float | None = None

    def __post_init__(self) -> None:
        self.nodes = self.params.nodes
        self.next_save = self.params.checkpoint_interval_s

    @property
    def background_saves(self) -> bool:
        return self.strategy.startswith("kubetrain")

    def available(self, at: float) -> int:
        return self.params.nodes - sum(1 for r in self.returns if r > at)

    def all_back(self) -> float:
        return max([self.t, *self.returns])

    # --- running ------------------------------------------------------------------------------
    def advance(self, until: float) -> None:
        """Train with `self.nodes` from `self.t` to `until`, periodic saves included."""
        p = self.params
        rate = self.nodes / p.nodes
        while self.t < until:
            if self.pending and self.pending[1] <= self.t:
                self.committed, self.pending = max(self.committed, self.pending[0]), None
            stop = min(until, self.next_save, self.pending[1] if self.pending else math.inf)
            self.work += (stop - self.t) * rate
            self.billed += (stop - self.t) * self.nodes
            self.t = stop
            if self.t >= self.next_save and self.t < until:
                self._periodic_save(until)

    def _periodic_save(self, until: float) -> None:
        p = self.params
        held = self.work
        if self.background_saves:
            stall = p.stall_s(self.nodes)
            self.pending = (held, self.t + stall + p.save_s(self.nodes))
        else:
            stall = p.save_s(self.nodes)
        end = min(until, self.t + stall)  # an interruption inside a sync save: not committed
        self.billed += (end - self.t) * self.nodes
        if end == self.t + stall and not self.background_saves:
            self.committed = held
        self.t = end
        self.next_save = self.t + p.checkpoint_interval_s

    def down(self, until: float) -> None:
        """The gang is not training until `until`; survivors held (and billed) meanwhile."""
        if until <= self.t:
            return
        if self.params.hold_survivors:
            # integrate the available node count over [t, until)
            edges = sorted({self.t, until, *(r for r in self.returns if self.t < r < until)})
            for a, b in itertools.pairwise(edges):
                self.billed += (b - a) * self.available(a)
        self.t = until

    def lose_uncommitted(self) -> None:
        if self.pending and self.pending[1] <= self.t:
            self.committed = self.pending[0]
        self.pending = None
        self.lost += self.work - self.committed
        self.work = self.committed

    def start(self, nodes: int, restore_s: float) -> None:
        """A new gang of `nodes`: container start and restore, then training from `committed`."""
        p = self.params
        boot = p.startup_s + restore_s
        self.billed += boot * nodes
        self.t += boot
        self.nodes = nodes
        self.next_save = self.t + p.checkpoint_interval_s

    # --- interruptions ------------------------------------------------------------------------
    def interrupt(self, event: Interruption) -> None:
        p = self.params
        self.grow_at = None
        reclaimed = min(event.nodes, self.nodes)
        back = event.at + event.outage + p.provision_s  # launched on the notice (Karpenter)
        if self.strategy == "reprovision":
            self._reprovision(event)
            return
        if self.strategy.startswith("kubetrain") and event.noticed:
            self.advance(event.at + p.notice_to_request_s)
            save = p.save_s(self.nodes) + p.request_to_commit_overhead_s
            if p.notice_to_request_s + save <= p.notice_s:
                self.billed += save * self.nodes
                self.t += save
                self.pending = None
                self.lost += p.lost_steps_with_notice * p.step_s
                self.committed = self.work = max(
                    0.0, self.work - p.lost_steps_with_notice * p.step_s
                )
                ready = self.t + p.commit_to_gang_running_s
            else:  # the save does not fit in the notice: the node dies mid-save
                self.advance(event.at + p.notice_s)
                self.lose_uncommitted()
                ready = self.t + p.detect_no_notice_s
        elif self.strategy.startswith("kubetrain"):  # no notice: the node vanished
            self.lose_uncommitted()
            ready = self.t + p.detect_no_notice_s + p.commit_to_gang_running_s
        else:  # periodic-restart: keeps training through the notice, dies at its end
            if event.noticed:
                self.advance(event.at + p.notice_s)
            self.lose_uncommitted()
            ready = self.t + p.baseline_detect_s
        self.returns = [r for r in self.returns if r > self.t] + [back] * reclaimed
        full_at = max(ready, self.all_back())
        survivors = self.available(ready)
        if (
            self.strategy == "kubetrain-elastic"
            and full_at > ready + p.elastic_grace_s
            and survivors >= p.min_nodes
        ):
            self.down(ready + p.elastic_grace_s)
            self.start(survivors, p.restore_s(survivors))
            self.grow_at = max(self.t, self.all_back())
            return
        self.down(full_at)
        self.start(p.nodes, p.restore_s(p.nodes))

    def grow(self) -> None:
        """Capacity is back: a coordinated checkpoint on the small gang, restart at full size."""
        p = self.params
        assert self.grow_at is not None
        self.advance(self.grow_at)
        self.grow_at = None
        save = p.save_s(self.nodes) + p.request_to_commit_overhead_s
        self.billed += save * self.nodes
        self.t += save
        self.pending, self.committed = None, self.work
        self.down(self.t + p.commit_to_gang_running_s)
        self.start(p.nodes, p.restore_s(p.nodes))

    def _reprovision(self, event: Interruption) -> None:
        p = self.params
        if event.noticed:
            self.advance(event.at + p.notice_s)
        self.lose_uncommitted()
        self.t += p.baseline_detect_s  # every node released: nothing billed while detecting
        # A new cluster anywhere: billed once its instances are up (after provision_s).
        self.billed += max(0.0, p.reprovision_s - p.provision_s) * p.nodes
        self.t += p.reprovision_s
        self.returns = []
        self.start(p.nodes, p.restore_s(p.nodes, s3=True))

    def replay(self, events: Sequence[Interruption]) -> None:
        horizon = self.params.horizon_h * 3600
        for event in events:
            if self.grow_at is not None and self.grow_at <= event.at:
                self.grow()
            if event.at < self.t:
                continue  # the gang is down (or restarting): dropped, see the docstring
            self.advance(event.at)
            self.interrupt(event)
        if self.grow_at is not None and self.grow_at < horizon:
            self.grow()
        if self.t < horizon:
            self.advance(horizon)

    def summary(self) -> dict[str, float]:
        p = self.params
        gpus = p.nodes * p.gpus_per_node
        useful_gpu_h = self.work / 3600 * gpus
        billed_gpu_h = self.billed / 3600 * p.gpus_per_node
        return {
            "goodput": self.work / self.t,
            "cost_per_useful_gpu_h": p.spot_price_fraction * billed_gpu_h / useful_gpu_h,
            "lost_h": self.lost / 3600,
        }


def replay_trace(doc: Mapping[str, Any], base: Params | None = None) -> dict[str, Any]:
    """One given run, simulated: its interruptions at their times, over its horizon.

    `doc["params"]` overrides `base` (the inputs measured on that run: step time, latencies,
    checkpoint interval); the result is what the model says that run's goodput was.
    """
    overrides = dict(doc.get("params", {}))
    params = dataclasses.replace(
        base or Params(), horizon_h=float(doc["horizon_s"]) / 3600, **overrides
    )
    events = sorted(
        (
            Interruption(
                at=float(e["at"]),
                nodes=int(e.get("nodes", 1)),
                outage=float(e.get("outage", 0.0)),
                noticed=bool(e.get("noticed", True)),
            )
            for e in doc["interruptions"]
        ),
        key=lambda e: e.at,
    )
    strategy = str(doc.get("strategy", "kubetrain"))
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: use one of {STRATEGIES}")
    run = Run(params, strategy)
    run.replay(events)
    return {
        "strategy": strategy,
        "interruptions": len(events),
        "horizon_s": params.horizon_h * 3600,
        "work_s": run.work,
        "lost_s": run.lost,
        **run.summary(),
    }


def on_demand(params: Params) -> dict[str, float]:
    """No interruptions, synchronous periodic saves, full price: the reference row."""
    interval, save = params.checkpoint_interval_s, params.save_s(params.nodes)
    goodput = interval / (interval + save)
    return {"goodput": goodput, "cost_per_useful_gpu_h": 1.0 / goodput, "lost_h": 0.0}


def simulate(params: Params, strategy: str, kind: str, rate_per_h: float) -> dict[str, float]:
    """Mean over `params.seeds` traces (the same traces for every strategy)."""
    rows = []
    for seed in range(params.seeds):
        events = trace(kind, rate_per_h, params, random.Random(f"{kind}-{rate_per_h}-{seed}"))
        run = Run(params, strategy)
        run.replay(events)
        rows.append(run.summary())
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| trace | interruptions/h | strategy | goodput | cost per useful GPU-h (x on-demand) |",
        "|---|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['trace']} | {r['rate_per_h']:g} | {r['strategy']} | {r['goodput']:.1%} "
            f"| {r['cost_per_useful_gpu_h']:.3f} |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], od: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    for col, kind in enumerate(TRACES):
        for strategy in STRATEGIES:
            rows = [r for r in results if r["trace"] == kind and r["strategy"] == strategy]
            xs = [r["rate_per_h"] for r in rows]
            axes[0][col].plot(xs, [r["goodput"] for r in rows], marker="o", label=strategy)
            axes[1][col].plot(xs, [r["cost_per_useful_gpu_h"] for r in rows], marker="o")
        axes[0][col].axhline(od["goodput"], color="grey", ls=":", label="on-demand")
        axes[1][col].axhline(od["cost_per_useful_gpu_h"], color="grey", ls=":")
        axes[0][col].set_title(f"{kind} interruptions")
        axes[1][col].set_xlabel("interruptions per hour (log)")
        axes[1][col].set_xscale("log")
    axes[0][0].set_ylabel("goodput (productive / wall)")
    axes[1][0].set_ylabel("cost per useful GPU-hour\n(x on-demand price)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Simulated goodput on spot (hack/bench/goodput_sim.py; assumptions in the JSON)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rates", default="0.05,0.1,0.25,0.5,1,2,4", help="interruptions per hour")
    ap.add_argument("--table-rate", type=float, default=0.5, help="rate of the printed table")
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json, <out>.md, <out>.png")
    ap.add_argument("--drills", type=Path, default=DRILLS)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a Params")
    ap.add_argument("--replay", type=Path, default=None, help="simulate this one trace (JSON)")
    args = ap.parse_args(argv)
    if args.replay:
        doc = json.loads(args.replay.read_text())
        print(json.dumps(replay_trace(doc, Params()), indent=1))
        return 0

    params = with_drills(Params(), args.drills)
    for item in args.set:
        name, _, raw = item.partition("=")
        current = getattr(params, name)  # AttributeError names an unknown parameter
        params = dataclasses.replace(params, **{name: type(current)(raw)})
    rates = sorted({float(r) for r in args.rates.split(",")} | {args.table_rate})
    results = [
        {"trace": kind, "rate_per_h": rate, "strategy": s, **simulate(params, s, kind, rate)}
        for kind in TRACES
        for rate in rates
        for s in STRATEGIES
    ]
    od = on_demand(params)
    headline = [r for r in results if r["rate_per_h"] == args.table_rate]
    text = table(headline)
    text += f"\n\non-demand reference: goodput {od['goodput']:.1%}, cost 1/goodput = "
    text += f"{od['cost_per_useful_gpu_h']:.3f} x on-demand per useful GPU-h"
    print(text)
    print("\nassumptions:", json.dumps(dataclasses.asdict(params), indent=1))
    if args.out:
        command = "python hack/bench/goodput_sim.py " + " ".join(argv or sys.argv[1:])
        report = {
            "command": command.strip(),
            "what": __doc__.split("\n\n")[0] if __doc__ else "",
            "assumptions": dataclasses.asdict(params),
            "drills_file": str(
                args.drills.relative_to(ROOT) if args.drills.is_relative_to(ROOT) else args.drills
            ),
            "on_demand": od,
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(f"`{command.strip()}`\n\n{text}\n")
        plot(results, od, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
