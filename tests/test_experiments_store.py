"""The results store: claims are atomic across processes (journal file and SQLite), lost runs come back, errors wait
for the next invocation. No training here: runs are keys, so these tests take seconds."""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest

from cnnlab.experiments.store import ResultStore

KEYS = [f"run{i}@abc" for i in range(40)]


def _claimer(url, keys, since, q):
    store = ResultStore(url)
    sid = store.study_id("s/quick")
    got = []
    store.enqueue_missing(sid, keys, since)  # every worker enqueues, as workers on several machines would
    while (c := store.claim(sid, keys)) is not None:
        got.append(c.key)
        store.finish(c, {"status": "finished", "best_val_acc": 0.5}, [{"epoch": 1, "val_acc": 0.5}])
    q.put(got)


@pytest.mark.parametrize("store_name", ["store.journal", "store.db"])
def test_three_processes_claim_every_run_exactly_once(tmp_path, store_name):
    url = str(tmp_path / store_name)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    since = time.time()
    procs = [ctx.Process(target=_claimer, args=(url, KEYS, since, q)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    counts = collections.Counter(k for g in got for k in g)
    assert set(counts) == set(KEYS), "a run was lost"
    assert max(counts.values()) == 1, f"runs done twice: {[k for k, n in counts.items() if n > 1]}"
    store = ResultStore(url)
    records = store.records(store.study_id("s/quick"))
    assert {k: r.state for k, r in records.items()} == {k: "finished" for k in KEYS}


def test_finished_runs_are_not_enqueued_again_and_records_keep_results(tmp_path):
    store = ResultStore(tmp_path / "s.journal")
    sid = store.study_id("s/quick")
    assert store.enqueue_missing(sid, KEYS[:2], time.time()) == KEYS[:2]
    c = store.claim(sid, KEYS[:2])
    store.finish(c, {"status": "diverged", "best_val_acc": None}, [{"epoch": 1, "train_loss": float("nan")}])
    assert store.enqueue_missing(sid, KEYS[:2], time.time()) == []
    rec = store.records(sid)[c.key]
    assert rec.state == "diverged" and rec.summary["status"] == "diverged"
    assert rec.metrics[0]["epoch"] == 1


def test_a_run_whose_process_died_is_failed_as_lost_and_enqueued_again(tmp_path):
    store = ResultStore(tmp_path / "s.journal")
    sid = store.study_id("s/quick")
    store.enqueue_missing(sid, KEYS[:1], time.time())
    c = store.claim(sid, KEYS[:1])
    store._stop_heartbeat(c)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that surely is not running any more
    store.storage.set_trial_user_attr(c.trial_id, "pid", dead.pid)
    assert store.fail_lost(sid) == [KEYS[0]]
    assert store.records(sid)[KEYS[0]].state == "lost"
    assert store.enqueue_missing(sid, KEYS[:1], time.time()) == KEYS[:1]
    again = store.claim(sid, KEYS[:1])
    assert again.key == KEYS[0] and again.resumed


def test_a_silent_run_on_another_machine_is_lost_after_the_grace_period(tmp_path):
    store = ResultStore(tmp_path / "s.journal", heartbeat=10, grace=60)
    sid = store.study_id("s/quick")
    store.enqueue_missing(sid, KEYS[:2], time.time())
    a, b = store.claim(sid, KEYS[:2]), store.claim(sid, KEYS[:2])
    for c in (a, b):
        store._stop_heartbeat(c)
        store.storage.set_trial_user_attr(c.trial_id, "machine", "elsewhere:1234")
    store.storage.set_trial_user_attr(a.trial_id, "heartbeat", time.time() - 61)
    assert store.fail_lost(sid) == [a.key]  # b's heartbeat is recent: still running


def test_live_claim_keeps_a_heartbeat(tmp_path):
    store = ResultStore(tmp_path / "s.journal", heartbeat=0.05)
    sid = store.study_id("s/quick")
    store.enqueue_missing(sid, KEYS[:1], time.time())
    c = store.claim(sid, KEYS[:1])
    t0 = store.trials(sid)[0].user_attrs["heartbeat"]
    time.sleep(0.3)
    assert store.trials(sid)[0].user_attrs["heartbeat"] > t0
    assert store.fail_lost(sid) == []
    store.fail(c, "interrupted")
    assert store.records(sid)[c.key].state == "interrupted"


def test_an_error_is_retried_by_the_next_invocation_not_this_one(tmp_path):
    store = ResultStore(tmp_path / "s.journal")
    sid = store.study_id("s/quick")
    since = time.time()
    store.enqueue_missing(sid, KEYS[:1], since)
    store.fail(store.claim(sid, KEYS[:1]), "error", "Traceback ... ValueError: boom")
    assert store.enqueue_missing(sid, KEYS[:1], since) == []
    assert store.records(sid)[KEYS[0]].error.endswith("boom")
    assert store.enqueue_missing(sid, KEYS[:1], time.time() + 1) == KEYS[:1]


def test_duplicate_trials_of_one_run_are_retired(tmp_path):
    store = ResultStore(tmp_path / "s.journal")
    sid = store.study_id("s/quick")
    # Two workers that enqueue the same missing run at the same moment leave two waiting trials for it.
    store.enqueue_missing(sid, KEYS[:1], time.time())
    import optuna
    store.storage.create_new_trial(sid, template_trial=optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, user_attrs={"run": KEYS[0]}))
    first = store.claim(sid, KEYS[:1])
    assert first.number == 0
    assert store.claim(sid, KEYS[:1]) is None  # the second trial is retired as a duplicate, not run
    assert [t.user_attrs.get("status") for t in store.trials(sid)][1] == "duplicate"


def test_three_processes_share_a_postgresql_store(postgres_url):
    url = postgres_url
    import optuna
    name = f"pg-test-{os.getpid()}-{time.time():.0f}"
    keys = [f"{name}-{k}" for k in KEYS]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(url, keys, time.time(), q)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    counts = collections.Counter(k for g in got for k in g)
    assert set(counts) == set(keys) and max(counts.values()) == 1
    optuna.delete_study(study_name="s/quick", storage=url)
