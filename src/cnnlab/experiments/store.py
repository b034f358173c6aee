"""The results store: which runs of a sweep are waiting, running, done, diverged or failed, on Optuna's storage.

One Optuna study per (spec, profile); one trial per run attempt, tagged with the run's key (`name@hash`, see spec.py).
Optuna supplies the engines and their locking (Optuna docs, "Storages"; "Journal storage"):
- default: a journal file (`JournalFileBackend`), append-only under a file lock, no server; safe for several worker
  processes on one machine (and on a shared file system that honours the lock);
- `sqlite:///file.db` (a path ending .db/.sqlite works too): Optuna's RDB storage on SQLite. SQLite ignores
  `SELECT ... FOR UPDATE`, so every transaction is opened with BEGIN IMMEDIATE here, which takes the write lock
  first and makes the claim below atomic (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL"
  for pysqlite);
- `postgresql://user:pass@host/db` or `mysql+pymysql://...`: workers on several machines share one sweep; Optuna
  locks the trial row with SELECT ... FOR UPDATE.

Claiming is race-free in two layers:
1. a worker pops a WAITING trial with `set_trial_state_values(RUNNING)`, which the storage performs as a
   compare-and-set (returns False if another worker got it first);
2. enqueueing is not atomic across workers (two may enqueue the same missing run at once), so the lowest-numbered
   trial of a run that has not failed owns the run; a worker that pops any other trial of it retires that trial as a
   duplicate. Trial numbers only grow and a failed trial never comes back, so exactly one trial owns a run at a time.
A running trial carries a heartbeat (a user attribute refreshed every `heartbeat` seconds). A trial whose worker is
gone is failed as `lost`, and the run is enqueued again; its run folder is then resumed from last.pt. On the
worker's own machine "gone" means its process is dead (a live process keeps its run whatever the grace); on another
machine, no heartbeat for `grace` seconds, which must be at least GRACE_BEATS heartbeats (a shorter one would take a
live run for lost and train it twice).

What is Optuna's and what is kept here, and why (checked against optuna 5.0): the engines, their locking and the
compare-and-set claim are Optuna's. Optuna's own heartbeat (`heartbeat_interval`, `grace_period`,
`fail_stale_trials`, `RetryFailedTrialCallback`) exists for `RDBStorage` only (`JournalStorage` is not a
`BaseHeartbeat`), so the default journal store would have none; and it judges a trial stale by time alone, while a
run here whose process is alive on this machine must never be taken over, whatever the grace. `study.ask()` pops an
enqueued trial the same way, but creates a new trial when none is waiting, which a sweep must not do (a run is
enqueued once, by key). Hence the heartbeat thread, the liveness rule and `claim` below; everything else is Optuna.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from sqlalchemy import event

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes, check_writable
from cnnlab.training.metrics import BEST_VAL_ACC

optuna.logging.set_verbosity(optuna.logging.WARNING)

GRACE_BEATS = 3  # the shortest grace, in heartbeats: two beats may be missed (a busy storage) before a run is lost
DEFAULT_STORE = "cnnlab-store.journal"  # under the sweep's --out folder
DONE = (TrialState.COMPLETE,)
LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def machine_id() -> str:
    """Host name plus boot id: a pid is only meaningful on the machine (and boot) that issued it."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    return f"{socket.gethostname()}:{boot}"


def process_start(pid: int) -> Optional[str]:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22); None where unknown. With the
    pid it names one process: a pid reused after a restart (a container's PID 1) has another start time."""
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)": state is field 3, starttime field 22
    return None


def owner_alive(attrs: Dict[str, Any]) -> bool:
    """Whether the process that claimed a run (pid and, where recorded, its start time) is still running."""
    pid = int(attrs["pid"])
    if not _pid_alive(pid):
        return False
    started = attrs.get("pid_start")
    return started is None or process_start(pid) in (None, started)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _jsonable(obj: Any) -> Any:
    """Summaries and metric rows as plain JSON (paths and numpy scalars to str/float; NaN kept)."""
    return json.loads(json.dumps(obj, default=str))


def open_storage(url: str):
    """A store URL or path -> an Optuna storage (journal file by default, RDB for database URLs)."""
    url = str(url)
    if "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3")):
        url = f"sqlite:///{Path(url).resolve()}"
    if "://" in url:
        return _rdb(url)
    if Path(url).exists() and not Path(url).is_file() and not Path(url).is_dir():
        raise CnnlabError(f"the results store {url!r} is not a regular file (a device or a pipe); give --store a file "
                          "path, e.g. runs/cnnlab-store.journal")
    path = check_writable(url, "results store")
    repair_journal(path)
    try:
        backend = optuna.storages.journal.JournalFileBackend(str(path))
    except OSError as e:
        raise CnnlabError(f"cannot open the results store {url!r} ({e.strerror}); choose a writable --store path")
    return optuna.storages.JournalStorage(backend)


_RECORD_START = b'{"op_code"'  # how every line Optuna's journal writes begins


def _journal_line(line: bytes) -> Optional[bytes]:
    """A journal line if it is a whole record; the whole record at its end where a torn record was glued before it
    (a torn line that the next append continued); None if there is none."""
    starts, i = [0], line.find(_RECORD_START, 1)
    while i != -1:
        starts.append(i)
        i = line.find(_RECORD_START, i + 1)
    for start in [starts[0], *reversed(starts[1:])]:
        try:
            rec = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(rec, dict) and "op_code" in rec:
            return line[start:]
    return None


def repair_journal(path: Path) -> None:
    """Make a journal store whole again before it is used, under the journal's own lock.

    A disk that fills up during an append leaves a torn last line; Optuna's next append continues it, and from then
    on every read of the store fails. A torn line is cut out (a whole record glued after it is kept), the cut bytes
    are kept in STORE.torn-<time> beside it, and a note says so; no whole record is lost. A file that is not a
    journal at all (a spec, an image, NUL bytes) is refused in one line instead of being appended to."""
    if not path.is_file():
        return  # a new store: Optuna creates it
    with open(path, "rb") as f:
        head = f.read(len(_RECORD_START))
    if not head:
        return
    if not head.startswith(_RECORD_START[:len(head)]):
        raise CnnlabError(f"{str(path)!r} is not a cnnlab results store (a journal of Optuna records, one JSON line "
                          "each); give --store a new file name, or move that file away")
    data = path.read_bytes()
    if data.endswith(b"\n") and all(_journal_line(line) == line for line in data.split(b"\n")[:-1]):
        return  # whole: the common case, checked without the lock
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()  # again, under the lock: another process may have appended meanwhile
        lines = data.split(b"\n")
        kept = [r for r in (_journal_line(line) for line in lines) if r is not None]
        cut = len(data) - sum(len(r) + 1 for r in kept)
        if cut <= 0:
            return
        stamp, n = time.strftime('%Y%m%d-%H%M%S'), 1
        backup = path.with_name(f"{path.name}.torn-{stamp}")
        while backup.exists():  # an earlier repair in the same second: keep both copies
            n += 1
            backup = path.with_name(f"{path.name}.torn-{stamp}-{n}")
        atomic_write_bytes(backup, data)
        atomic_write_bytes(path, b"".join(r + b"\n" for r in kept))
    finally:
        lock.release()
    logging.getLogger(__name__).warning(
        f"note: the results store {str(path)!r} held a torn record (a write cut short, e.g. by a full disk): "
        f"cut {cut} bytes, kept all {len(kept)} whole records; the store as it was is in {backup.name}")


def _rdb(url: str):
    kwargs: Dict[str, Any] = {}
    lock = contextlib.nullcontext()
    if url.startswith("sqlite"):
        db = url.split(":///", 1)[-1] if ":///" in url else ""
        if not db or db == ":memory:":  # an in-memory store forgets every run when the process ends
            raise CnnlabError(f"the results store {url!r} names no database file; write sqlite:///path/to/store.db")
        if db:
            check_writable(db, "results store")  # SQLite opens lazily: an unwritable file fails mid-sweep otherwise
            lock = _file_lock(Path(db + ".init-lock"))
        kwargs = {"connect_args": {"timeout": 120}}
    # Workers starting together race to create the schema (Optuna creates tables and an alembic version row on first
    # use): on SQLite a file lock serialises the opening; a database server gets a few retries instead.
    with lock:
        for attempt in range(5):
            try:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
                break
            except ImportError as e:
                missing = getattr(e.__cause__, "name", None) or str(e)
                raise CnnlabError(f"the results store {url!r} needs a database driver: module {missing!r} is not "
                                  "installed; e.g. pip install 'psycopg[binary]' for postgresql://, or pip install "
                                  "psycopg2-binary and write postgresql+psycopg2://") from None
            except Exception as e:  # sqlalchemy's errors: bad URL, server unreachable, wrong password
                text = str(e)
                if attempt < 4 and any(w in text for w in ("already exists", "UNIQUE", "duplicate key")):
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise CnnlabError(f"cannot open the results store {url!r}: {text.splitlines()[0]}") from None
    if storage.engine.name == "sqlite":
        _serialise_sqlite(storage.engine)
    return storage


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl  # here: POSIX only, and only a journal-file store takes this lock

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction BEGIN IMMEDIATE, so Optuna's read-check-write claim cannot interleave."""
    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the hooks were attached are dropped


@dataclass
class Record:
    """What the store knows of one run (its newest trial that matters)."""
    key: str
    state: str                      # waiting | running | finished | diverged | stopped | lost | interrupted | error
    number: int
    summary: Optional[dict] = None
    metrics: List[dict] = field(default_factory=list)
    worker: Optional[str] = None
    error: Optional[str] = None
    attempts: int = 0


@dataclass
class Claim:
    study_id: int
    trial_id: int
    number: int
    key: str
    resumed: bool = False           # an earlier attempt of this run exists (its folder may hold last.pt)
    _stop: Optional[threading.Event] = None
    _thread: Optional[threading.Thread] = None


class ResultStore:
    """Sweep bookkeeping on an Optuna storage. `heartbeat` and `grace` are in seconds."""

    def __init__(self, url, heartbeat: float = 30.0, grace: float = 300.0):
        if not (math.isfinite(heartbeat) and heartbeat > 0):
            raise CnnlabError(f"heartbeat must be a positive number of seconds, got {heartbeat}")
        if not (math.isfinite(grace) and grace >= GRACE_BEATS * heartbeat):
            raise CnnlabError(f"--grace {grace:g} is too short: a live run on another machine would be taken for "
                              f"lost between two heartbeats ({heartbeat:g} s apart) and trained twice; use at least "
                              f"{GRACE_BEATS * heartbeat:g} s ({GRACE_BEATS} heartbeats)")
        self.url = str(url)
        self.storage = open_storage(self.url)
        self.heartbeat, self.grace = heartbeat, grace
        self.machine = machine_id()

    # -- studies ---------------------------------------------------------------------------------------------------
    def study_id(self, sweep: str, create: bool = True) -> Optional[int]:
        """The study of a sweep (`spec/profile`), created on first use; None if absent and create is False."""
        try:
            return self.storage.get_study_id_from_name(sweep)
        except KeyError:
            if not create:
                return None
        try:
            return self.storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], sweep)
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
            return self.storage.get_study_id_from_name(sweep)

    def trials(self, study_id: int, states: Optional[Iterable[TrialState]] = None):
        return self.storage.get_all_trials(study_id, deepcopy=False, states=tuple(states) if states else None)

    # -- queueing ----------------------------------------------------------------------------------------------------
    def enqueue_missing(self, study_id: int, keys: List[str], since: float) -> List[str]:
        """Enqueue every run that has no waiting, running or completed trial. A run that failed with an error after
        `since` (this invocation) is not retried until the command is run again."""
        by_key: Dict[str, list] = {}
        for t in self.trials(study_id):
            by_key.setdefault(t.user_attrs.get("run"), []).append(t)
        added = []
        for key in keys:
            ts = by_key.get(key, [])
            if any(t.state in LIVE for t in ts):
                continue
            if any(t.user_attrs.get("status") == "error" and t.user_attrs.get("ended", 0) >= since for t in ts):
                continue
            template = optuna.trial.create_trial(state=TrialState.WAITING, user_attrs={"run": key,
                                                                                       "attempt": len(ts) + 1})
            self.storage.create_new_trial(study_id, template_trial=template)
            added.append(key)
        return added

    def fail_lost(self, study_id: int) -> List[str]:
        """Fail running trials whose worker is gone, so that their runs are enqueued (and resumed) again."""
        lost = []
        now = time.time()
        for t in self.trials(study_id, [TrialState.RUNNING]):
            a = t.user_attrs
            if a.get("machine") == self.machine and a.get("pid"):
                # this machine's runs are judged by their process alone: a live owner keeps its run, however long
                # its heartbeat has been silent (a stalled disk or a suspended laptop is not a lost run)
                if owner_alive(a):
                    continue
            elif now - float(a.get("heartbeat", a.get("claimed", now))) <= self.grace:
                continue
            tid = self.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            with contextlib.suppress(UpdateFinishedTrialError):
                self.storage.set_trial_user_attr(tid, "status", "lost")
                self.storage.set_trial_user_attr(tid, "ended", now)
                self.storage.set_trial_state_values(tid, TrialState.FAIL)
                lost.append(a.get("run"))
        return lost

    # -- claiming ----------------------------------------------------------------------------------------------------
    def claim(self, study_id: int, keys: Iterable[str], worker: str = "") -> Optional[Claim]:
        """Atomically take one waiting run among `keys` (see the module docstring); None when none is left."""
        wanted = set(keys)
        for t in self.trials(study_id, [TrialState.WAITING]):
            key = t.user_attrs.get("run")
            if key not in wanted:
                continue  # a run of another version of the spec: left for whoever runs that version
            tid = self.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                    continue  # another worker popped it first
            except UpdateFinishedTrialError:
                continue
            same = [u for u in self.trials(study_id) if u.user_attrs.get("run") == key and u.state in LIVE]
            owner = min(u.number for u in same)
            if owner != t.number:
                self._close(tid, TrialState.FAIL, {"status": "duplicate", "owner": owner})
                continue
            earlier = [u for u in self.trials(study_id) if u.user_attrs.get("run") == key and u.number < t.number]
            claim = Claim(study_id, tid, t.number, key, resumed=bool(earlier))
            self._start_heartbeat(claim, worker)
            return claim
        return None

    def _start_heartbeat(self, claim: Claim, worker: str) -> None:
        now = time.time()
        for k, v in {"machine": self.machine, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                     "worker": worker or f"{socket.gethostname()}:{os.getpid()}", "claimed": now,
                     "heartbeat": now}.items():
            self.storage.set_trial_user_attr(claim.trial_id, k, v)
        claim._stop = threading.Event()

        def beat():
            while not claim._stop.wait(self.heartbeat):
                with contextlib.suppress(Exception):  # a missed beat is harmless; the grace period covers it
                    self.storage.set_trial_user_attr(claim.trial_id, "heartbeat", time.time())

        claim._thread = threading.Thread(target=beat, name=f"heartbeat-{claim.number}", daemon=True)
        claim._thread.start()

    def _stop_heartbeat(self, claim: Claim) -> None:
        if claim._stop is not None:
            claim._stop.set()
            claim._thread.join()

    def _close(self, trial_id: int, state: TrialState, attrs: Dict[str, Any],
               value: Optional[float] = None) -> bool:
        """Set attributes then the final state; False if the trial was already closed (e.g. failed as lost)."""
        try:
            for k, v in {**attrs, "ended": time.time()}.items():
                self.storage.set_trial_user_attr(trial_id, k, _jsonable(v))
            self.storage.set_trial_state_values(trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError:
            return False
        return True

    # -- finishing ---------------------------------------------------------------------------------------------------
    def finish(self, claim: Claim, summary: dict, metrics: List[dict]) -> bool:
        """Record a run that ended by itself: finished, stopped (time budget) or diverged. All count as done."""
        self._stop_heartbeat(claim)
        best = summary.get(BEST_VAL_ACC)
        value = float(best) if isinstance(best, (int, float)) and math.isfinite(best) else 0.0
        return self._close(claim.trial_id, TrialState.COMPLETE,
                           {"status": summary.get("status", "finished"), "summary": summary, "metrics": metrics},
                           value)

    def fail(self, claim: Claim, status: str, error: str = "") -> bool:
        """Record an attempt that did not end by itself: `interrupted` (resumed at once) or `error`."""
        self._stop_heartbeat(claim)
        return self._close(claim.trial_id, TrialState.FAIL, {"status": status, "error": error[-2000:]})

    # -- reading -----------------------------------------------------------------------------------------------------
    def records(self, study_id: Optional[int]) -> Dict[str, Record]:
        """run key -> Record of its owning trial (done or live), else of its latest failed attempt."""
        if study_id is None:
            return {}
        by_key: Dict[str, list] = {}
        for t in self.trials(study_id):
            key = t.user_attrs.get("run")
            if key is not None and t.user_attrs.get("status") != "duplicate":
                by_key.setdefault(key, []).append(t)
        rank = {TrialState.COMPLETE: 3, TrialState.RUNNING: 2, TrialState.WAITING: 1}
        # A completed trial tells the run's result; else the live one; else the latest failed attempt.
        return {key: _record(max(ts, key=lambda t: (rank.get(t.state, 0), t.number)), len(ts))
                for key, ts in by_key.items()}


def _record(t, attempts: int) -> Record:
    a = t.user_attrs
    if t.state == TrialState.WAITING:
        state = "waiting"
    elif t.state == TrialState.RUNNING:
        state = "running"
    else:
        state = a.get("status", "finished" if t.state == TrialState.COMPLETE else "error")
    return Record(a["run"], state, t.number, a.get("summary"), a.get("metrics") or [], a.get("worker"),
                  a.get("error"), attempts)
