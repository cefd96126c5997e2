"""The run skeleton (:class:`robusttext.runs.results.Run`) deals items out over processes: two ranks played by
two threads that share a folder and meet at a barrier, as two processes do at ``wait_for_everyone``."""

from __future__ import annotations

import json
import threading
import time

from robusttext.runs.results import Run


class ThreadRank:
    """The part of ``accelerate.PartialState`` that Run uses, for one of two threads."""

    def __init__(self, rank: int, barrier: threading.Barrier) -> None:
        self.process_index, self.num_processes = rank, 2
        self.is_main_process = self.is_local_main_process = rank == 0
        self.device = "cpu"
        self._barrier = barrier

    def wait_for_everyone(self) -> None:
        self._barrier.wait(timeout=30)


def test_a_late_rank_plans_from_the_same_snapshot_as_the_others(tmp_path):
    # rank 1 reaches execute() 0.5 s after rank 0, which finishes its first item at once: rank 1 must
    # still take exactly the odd items, not re-deal what is left after rank 0's first record
    barrier, shares, errors = threading.Barrier(2), {}, []

    def rank(r: int) -> None:
        try:
            run = Run(tmp_path / "run", {"task": "test"}, state=ThreadRank(r, barrier))
            if r == 1:
                time.sleep(0.5)

            def work(idx, tick):
                shares.setdefault(r, []).extend(idx)
                return [{"index": i, "value": i * i} for i in idx]

            run.execute(6, work, chunk_size=1, desc="t")
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert shares == {0: [0, 2, 4], 1: [1, 3, 5]}
    merged = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in merged] == list(range(6)) and all(r["value"] == r["index"] ** 2 for r in merged)
