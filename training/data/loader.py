"""Bucketed batches read by DataLoader worker processes, with an exact, resumable position.

Each worker runs its own `BucketBatches` over a disjoint share of the shards (`split_shards`) and sends every
batch with its worker id and that worker's position right after the batch. The training process keeps, per
worker, the position of the last batch it actually took: batches the DataLoader prefetched but nobody consumed
are not counted, so a checkpoint never skips them. The DataLoader takes batches from its workers strictly in
turn (0, 1, ..., N-1, 0, ...) and the streams never end, so the order is a function of the per-worker positions
and of which worker is next; a resumed loader renumbers its workers so that the next one comes first, and yields
the same batches as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

# make(worker=, workers=) -> that worker's BucketBatches; a functools.partial, so spawned workers can pickle it
MakeBatches = Callable[..., object]


def _stream_dataset(make: MakeBatches, workers: int, states: dict, first: int):
    """An IterableDataset whose DataLoader worker k reads as logical worker (first + k) % workers."""
    from torch.utils.data import IterableDataset, get_worker_info

    class WorkerStreams(IterableDataset):
        def __iter__(self) -> Iterator[dict]:
            info = get_worker_info()
            if info is None or info.num_workers != workers:
                raise RuntimeError(f"WorkerStreams must be read by a DataLoader with num_workers={workers}")
            me = (first + info.id) % workers
            batches = make(worker=me, workers=workers)
            if states.get(me) is not None:
                batches.load_state_dict(states[me])
            for batch in batches:
                yield {"batch": batch, "worker": me, "state": batches.state_dict()}

    return WorkerStreams()


def _as_is(item: dict) -> dict:
    """The DataLoader's collate step: batches are made by BucketBatches already."""
    return item


class WorkerBatches:
    """Iterates like `BucketBatches` (same batches, `state_dict`/`load_state_dict`) with `workers` processes."""

    def __init__(self, make: MakeBatches, workers: int, prefetch_factor: int = 2, pin_memory: bool = False):
        if workers < 1:
            raise ValueError("WorkerBatches needs workers >= 1; read in-process with BucketBatches instead")
        for w in range(workers):  # too few shards fail here, in the training process, with the fix
            make(worker=w, workers=workers)
        self.make, self.workers = make, workers
        self.prefetch_factor, self.pin_memory = prefetch_factor, pin_memory
        self.states: dict[int, dict | None] = dict.fromkeys(range(workers))  # after each worker's last taken batch
        self.next = 0  # the worker whose batch comes next
        self._it: Iterator[dict] | None = None

    def _start(self) -> Iterator[dict]:
        from torch.utils.data import DataLoader

        ds = _stream_dataset(self.make, self.workers, dict(self.states), self.next)
        # the stream never ends, so one iterator serves the whole run: persistent_workers only matters if
        # a caller iterates the DataLoader again
        return iter(DataLoader(ds, batch_size=None, collate_fn=_as_is, num_workers=self.workers,
                               prefetch_factor=self.prefetch_factor, persistent_workers=True,
                               pin_memory=self.pin_memory))

    def __iter__(self) -> Iterator[dict]:
        if self._it is None:
            self._it = self._start()
        while True:
            item = next(self._it)
            if item["worker"] != self.next:  # the turn order is what makes resume exact; never guess past it
                raise RuntimeError(f"DataLoader gave worker {item['worker']}'s batch when worker {self.next}'s "
                                   "was due; exact resume needs the in-order DataLoader (in_order=True)")
            self.states[item["worker"]] = item["state"]
            self.next = (item["worker"] + 1) % self.workers
            batch = item["batch"]
            batch["size"] = tuple(batch["size"])  # pin_memory turns tuples into lists
            yield batch

    def state_dict(self) -> dict:
        return {"workers": self.workers, "next": self.next, "states": dict(self.states)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("workers") != self.workers:
            was = state.get("workers", "0 (in-process)")
            raise ValueError(f"the saved data position was read with data.workers={was}, this run has "
                             f"data.workers={self.workers}; resume with data.workers={was} (each worker owns its "
                             "own shards and position), or start a new run")
        self.close()
        self.states, self.next = dict(state["states"]), state["next"]

    def close(self) -> None:
        """Stop the worker processes (a later iteration starts new ones at the current position)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
