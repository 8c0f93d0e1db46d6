"""Every worker pod's newest view, kept from the pod watch (kubetrain.podwatch): by job, by node,
and the zone choice's counts (UsageIndex); and the jobs waiting for room, whom room coming free
wakes.

O(1) per event, so a pass of one job reads its own pods and never scans the cluster's (issue 14).
Pure: the watch feeds it views, the reconcile daemons read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from kubetrain.reconcile.observe import PodView, UsageIndex, waits_for

Key = tuple[str, str]  # (namespace, job)


@dataclass(frozen=True)
class Change:
    """What one pod event means for the jobs: wake the pod's own job (`wake`: False when all that
    changed is rank 0's progress heartbeat, which the job reads at its own hang-check deadline),
    and whether room on a node may have come free (`freed`: the jobs waiting for room count again)."""

    wake: bool
    freed: bool


class PodIndex:
    def __init__(self) -> None:
        self.usage = UsageIndex()
        self._by_job: dict[Key, dict[str, PodView]] = {}
        self._by_node: dict[str, dict[str, Key]] = {}  # node -> {uid: job} (finished pods too)
        self._waiting: set[Key] = set()  # jobs whose last pass found no room for their gang

    def __len__(self) -> int:
        return sum(len(pods) for pods in self._by_job.values())

    def pods(self, key: Key) -> list[PodView]:
        """The job's pods, as the watch last showed them."""
        return list(self._by_job.get(key, {}).values())

    def jobs_on(self, node: str) -> set[Key]:
        """Jobs with a pod bound to `node` (finished ones too): whom the node's changes concern."""
        return set(self._by_node.get(node, {}).values())

    def waiting_jobs(self) -> list[Key]:
        """Jobs whose last pass found no room for their gang: room coming free is worth a pass.
        Only those: a gang just created behind its gate gets its pass from its own pods' events,
        and waking every gated gang at each pod that bound made a storm of passes while a
        hundred gangs started (issue 14)."""
        return list(self._waiting)

    def hold(self, key: Key, waiting: bool) -> None:
        """The job's pass found no room (True), or did (False; also when its daemon ends)."""
        if waiting:
            self._waiting.add(key)
        else:
            self._waiting.discard(key)

    def apply(self, type_: str, view: PodView) -> Change:
        """One watch event (ADDED | MODIFIED | DELETED) of one pod."""
        old = self.usage.latest(view.uid)
        if type_ == "DELETED":
            self._remove(old or view)
            return Change(wake=True, freed=view.node is not None)
        self._put(old, view)
        quiet = old is not None and dataclasses.replace(old, progress=view.progress) == view
        # Room may have come free: on the node of a pod that finished or is going, and in the
        # zone of a pinned pod that no longer waits there (bound: a gang held back by the other
        # gangs' pods pinned to its zone counts again; it waited minutes for its requeue).
        stopped_waiting = old is not None and waits_for(old) is not None and waits_for(view) is None
        return Change(
            wake=not quiet,
            freed=not quiet
            and (stopped_waiting or (view.node is not None and (view.finished or view.deleting))),
        )

    def replace(self, views: Iterable[PodView], namespace: str = "") -> set[Key]:
        """A fresh listing of the pods in `namespace` ("": every namespace): pods it lacks were
        deleted while the watch was away. Returns the jobs whose pods changed."""
        fresh = {view.uid: view for view in views}
        changed: set[Key] = set()
        for pods in list(self._by_job.values()):
            for uid, old in list(pods.items()):
                if (not namespace or old.namespace == namespace) and uid not in fresh:
                    self._remove(old)
                    changed.add((old.namespace, old.job))
        for view in fresh.values():
            before = self.usage.latest(view.uid)
            if before != view:
                self._put(before, view)
                changed.add((view.namespace, view.job))
        return changed

    def _put(self, old: PodView | None, view: PodView) -> None:
        key = (view.namespace, view.job)
        self.usage.update(view)
        self._by_job.setdefault(key, {})[view.uid] = view
        if old is not None and old.node and old.node != view.node:
            self._unbind(old)
        if view.node:
            self._by_node.setdefault(view.node, {})[view.uid] = key

    def _remove(self, view: PodView) -> None:
        key = (view.namespace, view.job)
        self.usage.forget(view.uid)
        pods = self._by_job.get(key)
        if pods is not None:
            pods.pop(view.uid, None)
            if not pods:
                del self._by_job[key]
        if view.node:
            self._unbind(view)

    def _unbind(self, view: PodView) -> None:
        assert view.node
        on_node = self._by_node.get(view.node)
        if on_node is not None:
            on_node.pop(view.uid, None)
            if not on_node:
                del self._by_node[view.node]
