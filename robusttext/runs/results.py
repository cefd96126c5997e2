"""Incremental, resumable, multi-process-safe results files (``results.jsonl``).

A run writes one JSON line per finished input as it goes. Process ``rank`` appends to
``results.part{rank}.jsonl`` (flushed and fsynced per chunk), so an interrupt loses at most the inputs
in flight. Rerunning the same command reads every finished line back and skips those inputs; the run's
parameters are kept in ``run_config.json`` and a rerun with different parameters is refused rather than
mixed. ``finalize`` merges everything into one ``results.jsonl`` sorted by index.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

CONFIG_NAME = "run_config.json"
#: One line per process and execution: which items it processed (``Run`` writes it; tests read it).
SHARDS_NAME = "shards.jsonl"


class ParameterMismatchError(ValueError):
    """The output folder holds results of a run with other parameters."""


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (interrupted write) is ignored."""
    records = []
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class ResultsStore:
    """Per-input records in ``output_dir``, written incrementally and resumable.

    Args:
        output_dir: the run's folder (created if missing).
        params: everything that determines the results (model, data, seed, budgets, ...). A folder
            written with other params is refused with :class:`ParameterMismatchError`.
        rank: this process's index (0 for single-process runs).
        name: base name of the merged file (``results`` -> ``results.jsonl``).
    """

    def __init__(self, output_dir: str | os.PathLike, params: dict, rank: int = 0, name: str = "results") -> None:
        self.dir = Path(output_dir)
        self.params = json.loads(json.dumps(params))  # normalise tuples etc. as JSON would
        self.rank = int(rank)
        self.name = name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.merged = self.dir / f"{name}.jsonl"
        self.part = self.dir / f"{name}.part{self.rank}.jsonl"

    # ------------------------------------------------------------------ parameters
    def check_params(self, write: bool) -> None:
        """Refuse a folder holding results of other parameters; record ours (main process: ``write``)."""
        path = self.dir / CONFIG_NAME
        if path.exists():
            old = json.loads(path.read_text())
            diff = sorted(k for k in set(old) | set(self.params) if old.get(k) != self.params.get(k))
            changed = [k for k in diff if k.endswith("_fingerprint")]
            if changed:
                what = " and ".join({"model_fingerprint": "the model's files", "data_fingerprint": "the examples"}
                                    .get(k, k) for k in changed)
                raise ParameterMismatchError(
                    f"--output-dir {self.dir} holds results for other content: {what} changed since they were "
                    "written. Refusing to resume: pass --overwrite-output-dir to start fresh, or choose another "
                    "--output-dir."
                )
            if diff:
                shown = ", ".join(f"{k}: {old.get(k)!r} -> {self.params.get(k)!r}" for k in diff[:6])
                raise ParameterMismatchError(
                    f"--output-dir {self.dir} holds results of a run with other parameters ({shown}). "
                    "Refusing to mix them: rerun with the same parameters to resume, choose another "
                    "--output-dir, or pass --overwrite-output-dir to start fresh."
                )
        elif self.merged.exists() or any(self.dir.glob(f"{self.name}.part*.jsonl")):
            raise ParameterMismatchError(
                f"--output-dir {self.dir} holds {self.name} files but no {CONFIG_NAME}; cannot tell whether "
                "they match this run. Choose another --output-dir or pass --overwrite-output-dir."
            )
        elif write:
            path.write_text(json.dumps(self.params, indent=2, sort_keys=True) + "\n")

    def clear(self) -> None:
        """Delete this folder's results and parameters (``--overwrite-output-dir``)."""
        for p in [self.merged, self.dir / CONFIG_NAME, self.dir / SHARDS_NAME, *self.dir.glob(f"{self.name}.part*.jsonl")]:
            p.unlink(missing_ok=True)

    @classmethod
    def open_run(cls, output_dir: str | os.PathLike, params: dict, state: Any, overwrite: bool = False,
                 name: str = "results") -> "ResultsStore":
        """The store of one process of a (possibly multi-process) run: the main process clears the folder
        when ``overwrite``; every process refuses a folder of other parameters; the main process records
        ours. ``state`` is an ``accelerate.PartialState`` (anything with ``process_index``,
        ``is_main_process`` and ``wait_for_everyone()``)."""
        store = cls(output_dir, params, rank=state.process_index, name=name)
        if overwrite and state.is_main_process:
            store.clear()
        state.wait_for_everyone()
        store.check_params(write=False)
        state.wait_for_everyone()
        if state.is_main_process:
            store.check_params(write=True)
        return store

    # ------------------------------------------------------------------ records
    def finished(self) -> dict[int, dict]:
        """Every finished record so far (merged file and every process's part file), by index."""
        out: dict[int, dict] = {}
        for path in [self.merged, *sorted(self.dir.glob(f"{self.name}.part*.jsonl"))]:
            for rec in read_jsonl(path):
                out[int(rec["index"])] = rec
        return out

    def append(self, records: Iterable[dict]) -> None:
        """Append finished records to this process's part file, durably."""
        with open(self.part, "ab") as fh:
            if fh.tell() > 0:
                # A write torn by an interrupt leaves a partial last line: end it so it stays alone
                # (read_jsonl skips it) instead of swallowing the next record.
                with open(self.part, "rb") as check:
                    check.seek(-1, os.SEEK_END)
                    if check.read(1) != b"\n":
                        fh.write(b"\n")
            for rec in records:
                fh.write((json.dumps(rec, sort_keys=True) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def finalize(self) -> list[dict]:
        """Merge all part files into ``results.jsonl`` (sorted by index) and remove them (main process)."""
        done = self.finished()
        records = [done[i] for i in sorted(done)]
        tmp = self.merged.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
        os.replace(tmp, self.merged)
        for p in self.dir.glob(f"{self.name}.part*.jsonl"):
            p.unlink()
        return records


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def sigint_flag() -> Iterator[list[bool]]:
    """While active, Ctrl-C (SIGINT) records itself in the yielded list (non-empty once pressed) and raises
    ``KeyboardInterrupt`` where the main thread is, except inside an object's finalizer (``__del__``), where
    Python would drop it with a traceback: a run checks the list between chunks. A handler other than Python's
    default is left alone."""
    pressed: list[bool] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield pressed
        return

    def on_sigint(signum: int, frame: Any) -> None:
        pressed.append(True)
        if frame is None or frame.f_code.co_name != "__del__":  # raised in a finalizer it would be dropped
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


class Run:
    """The skeleton every long command shares: open, shard, resume, merge, finish.

    * **open**: the main process clears the folder on ``overwrite``; every process refuses a folder holding
      results of other parameters (``params`` include the model's and the examples' content fingerprints,
      :mod:`robusttext.runs.fingerprint`, so a retrained model or an edited data file is never resumed);
    * **shard**: items not yet finished are dealt out by position (``todo[rank::world]``) over the processes
      of ``accelerate launch`` / ``torchrun`` (:func:`robusttext.runs.distributed.process_state`);
    * **resume**: each process appends finished records to its own part file, durably, as they come; a
      rerun skips them; Ctrl-C raises :class:`RunInterrupted` with the count written so far;
    * **log**: each process appends its rank, the world size and the items it processed to ``shards.jsonl``;
    * **merge**: the main process merges the part files into ``{name}.jsonl``, sorted by index;
    * **finish**: the main process writes the summaries and reports from the merged records; every
      process waits for it.

    Args:
        output_dir: the run's folder.
        params: everything that determines the results (recorded in ``run_config.json``).
        overwrite: delete earlier results first (``--overwrite-output-dir``).
        name: base name of the records file.
        state: an ``accelerate.PartialState`` (default: :func:`robusttext.runs.distributed.process_state`).
    """

    def __init__(self, output_dir: str | os.PathLike, params: dict, overwrite: bool = False, name: str = "results",
                 state: Any = None) -> None:
        from .distributed import process_state

        self.state = state if state is not None else process_state()
        self.dir = Path(output_dir)
        self.store = ResultsStore.open_run(output_dir, params, self.state, overwrite=overwrite, name=name)

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    def execute(
        self, num_items: int, process_chunk: Callable[[list[int], Callable[[], None]], Sequence[dict]],
        chunk_size: int = 32, desc: str = "certify", unit: str = "inputs", fixed_chunks: bool = False,
    ) -> list[dict] | None:
        """Process items ``0..num_items-1`` over all processes; the main process gets the merged records
        sorted by index, the others None.

        ``process_chunk(indices, tick)`` returns one record (a dict with an ``index``) per item and may call
        ``tick()`` as each item finishes, so the progress bar moves per item, not per chunk. With
        ``fixed_chunks`` the chunks are the fixed blocks ``[k * chunk_size, (k + 1) * chunk_size)`` and whole
        blocks are dealt out (for work whose randomness is per block, e.g. a batched attack); without, the
        items left are dealt out one by one.
        """
        from tqdm.auto import tqdm

        state, store = self.state, self.store
        finished = store.finished()
        state.wait_for_everyone()  # every process plans from the same snapshot, before any writes a record
        if fixed_chunks:
            blocks = [list(range(s, min(s + chunk_size, num_items))) for s in range(0, num_items, chunk_size)]
            blocks = [b for b in blocks if any(i not in finished for i in b)][state.process_index :: state.num_processes]
            chunks = [[i for i in b if i not in finished] for b in blocks]
        else:
            todo = [i for i in range(num_items) if i not in finished]
            mine = todo[state.process_index :: state.num_processes]
            chunks = [mine[s : s + chunk_size] for s in range(0, len(mine), chunk_size)]
        mine = [i for c in chunks for i in c]
        if finished and state.is_main_process:
            logging.getLogger("robusttext").warning(
                "resuming in %s: %d of %d %s already done", store.dir, len(finished), num_items, unit)
        bar = tqdm(total=len(mine), desc=f"{desc} [{state.process_index}/{state.num_processes}]",
                   disable=not state.is_local_main_process)
        try:
            with sigint_flag() as interrupted:
                for idx in chunks:
                    ticks = [0]

                    def tick() -> None:
                        ticks[0] += 1
                        bar.update(1)

                    store.append(process_chunk(idx, tick))
                    bar.update(len(idx) - ticks[0])
                    if interrupted:  # a Ctrl-C that Python dropped (it landed in a finalizer): stop here
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            from ..errors import RunInterrupted

            bar.close()
            raise RunInterrupted(len(store.finished()), num_items, unit) from None
        bar.close()
        self._log_share(mine)
        state.wait_for_everyone()
        records = store.finalize() if state.is_main_process else None
        state.wait_for_everyone()
        return records

    def _log_share(self, indices: list[int]) -> None:
        """Append this process's share to ``shards.jsonl`` (rank, world size, the items it processed)."""
        line = json.dumps({"rank": self.state.process_index, "world_size": self.state.num_processes,
                           "indices": indices}) + "\n"
        fd = os.open(self.dir / SHARDS_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))  # one append per process: lines do not interleave
        finally:
            os.close(fd)

    def finish(self, write: Callable[[], None]) -> None:
        """Run ``write`` (summaries, reports) on the main process; every process waits for it."""
        if self.is_main:
            write()
        self.state.wait_for_everyone()

    def read_json(self, filename: str) -> Any:
        """A JSON file the main process wrote in the run folder (readable on every process after :meth:`finish`)."""
        return json.loads((self.dir / filename).read_text(encoding="utf-8"))


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import accelerate
    import datasets
    import transformers

    from ..version import __version__

    return {
        "robusttext": __version__,
        "torch": __import__("torch").__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
    }
