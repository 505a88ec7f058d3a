"""Benchmark of the REST core: Synthea transaction loading, single creates, read by id, memory, DB size.

Usage (from the repository root; see bench/README.md):

    .venv/bin/python -m bench.rest [--sqlite] [--workers 1,2] [--data DIR] [--duration 10] [--profile raw]

Starts `fhir-server serve` on a fresh database (PostgreSQL by default) per worker count, loads the
Synthea transaction Bundles with a few asyncio clients, then drives single creates and reads with
`wrk` (Lua scripts), samples the RSS of the server process tree, and prints a table; the figures go
to bench/results/rest-<backend>-<time>.json. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import psycopg.sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea-r4"  # ../shared/data
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FHIR_JSON = "application/fhir+json"


# ---------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    """The 1/5/15-minute load averages as text."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds user+system, RSS bytes) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, int(fields[21]) * _PAGE


def tree(root: int) -> list[int]:
    """`root` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


class Sampler(threading.Thread):
    """Samples RSS and CPU time of the server tree and CPU time of the bench database's backends."""

    def __init__(self, pid: int, db: Database, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.db = db
        self.interval = interval
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self.cpu: dict[tuple[str, int], float] = {}  # (group, pid) -> last CPU seconds seen
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._pg = None if db.sqlite else psycopg.connect(db.admin, autocommit=True)

    def sample(self) -> None:
        rss = 0
        seen: list[tuple[str, int, float]] = []
        for pid in tree(self.pid):
            st = _stat(pid)
            if st is not None:
                rss += st[2]
                seen.append(("server", pid, st[1]))
        if self._pg is not None:
            rows = self._pg.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db.name,))
            for (pid,) in rows.fetchall():
                st = _stat(pid)
                if st is not None:
                    seen.append(("db", pid, st[1]))
        with self._lock:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            for group, pid, cpu in seen:
                self.cpu[(group, pid)] = cpu

    def totals(self) -> dict[str, float]:
        """CPU seconds so far per group (processes that ended count with their last sample)."""
        self.sample()
        with self._lock:
            out = {"server": 0.0, "db": 0.0}
            for (group, _), cpu in self.cpu.items():
                out[group] += cpu
            return out

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        if self._pg is not None:
            self._pg.close()

    @property
    def peak(self) -> int:
        return max(self.peaks.values(), default=0)


@contextlib.contextmanager
def phase(sampler: Sampler, name: str, out: dict[str, Any]) -> Iterator[None]:
    """Run a phase: its peak RSS and the CPU seconds of the server and the database go into `out`."""
    sampler.phase = name
    before = sampler.totals()
    start = dict(sampler.cpu)
    backends = {pid for group, pid in sampler.cpu if group == "db"}
    out["loadavg_before"] = loadavg()
    yield
    after = sampler.totals()
    out["loadavg_after"] = loadavg()
    out["server_cpu_s"] = after["server"] - before["server"]
    out["db_cpu_s"] = after["db"] - before["db"]
    out["rss_peak_bytes"] = sampler.peaks.get(name, 0)
    # Database connections opened during the phase (pool churn costs a backend start each).
    out["db_backends_new"] = len({pid for group, pid in sampler.cpu if group == "db"} - backends)
    # CPU seconds per server process (are the workers sharing the work?)
    out["server_cpu_by_process"] = sorted(
        (round(cpu - start.get(key, 0.0), 2) for key, cpu in sampler.cpu.items() if key[0] == "server"),
        reverse=True,
    )


# ---------------------------------------------------------------- database
@dataclass
class Database:
    """A fresh database for one run: a PostgreSQL database or a SQLite file; dropped afterwards."""

    sqlite: bool
    admin: str = PG_ADMIN
    name: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:10]}")
    tmp: Path | None = None
    settings: list[str] = field(default_factory=list)  # NAME=VALUE for ALTER DATABASE ... SET

    def create(self) -> str:
        if self.sqlite:
            self.tmp = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
            return f"sqlite:///{self.tmp / 'fhir.db'}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
            for setting in self.settings:
                key, _, value = setting.partition("=")
                if not key.replace("_", "").isalnum():
                    raise SystemExit(f"bad --pg-set {setting!r}")
                conn.execute(f'ALTER DATABASE "{self.name}" SET {key} = {psycopg.sql.quote(value)}')
        return self.admin.rsplit("/", 1)[0] + f"/{self.name}"

    def size(self) -> int:
        """Bytes on disk: pg_database_size, or the SQLite files (database, WAL, shared memory)."""
        if self.sqlite:
            assert self.tmp is not None
            return sum(p.stat().st_size for p in self.tmp.iterdir())
        with psycopg.connect(self.admin, autocommit=True) as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (self.name,)).fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        if self.sqlite:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            return
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# ---------------------------------------------------------------- server
def server_command(root: Path | None) -> list[str]:
    """`fhir-server serve` from this interpreter's environment (or the source tree at `root`)."""
    exe = Path(sys.executable).parent / "fhir-server"
    if root is None and exe.exists():
        return [str(exe), "serve"]
    return [sys.executable, "-m", "fhir_server.cli", "serve"]


@contextlib.contextmanager
def running_server(
    url: str, workers: int, root: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the server (from source tree `root` if given) on a free port; stop its process group after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": url,
        "FHIR_ALLOW_ANONYMOUS": "true",
        "FHIR_CHECK_REFERENCES": "true",
        "FHIR_BASE_URL": base,
        "FHIR_LOG_LEVEL": "warning",
    }
    if root is not None:
        env["PYTHONPATH"] = str(root)
    cmd = [*server_command(root), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        cmd, env=env, cwd=root or ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(
                    f"the server exited with {proc.returncode}:\n{log.read().decode(errors='replace')}"
                )
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /metadata within 120 s")
            time.sleep(0.3)
        # With several workers each must be up: ask a few more times.
        for _ in range(workers * 4):
            httpx.get(f"{base}/metadata", timeout=10)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        tail = log.read().decode(errors="replace")
        errors = [line for line in tail.splitlines() if "Traceback" in line or " ERROR " in line]
        if errors:
            print(
                f"  server log had {len(errors)} error lines; last lines:\n"
                + "\n".join(tail.splitlines()[-20:])
            )
        log.close()


@contextlib.contextmanager
def profiling(pid: int, out: Path | None, fmt: str) -> Iterator[None]:
    """Sample the server tree with py-spy during the block (when `out` is given)."""
    if out is None:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(pid), "--subprocesses"]
    cmd += ["--nonblocking", "--gil", "--rate", "200", "--format", fmt, "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"  profile: {out}")


# ---------------------------------------------------------------- loading (asyncio httpx)
def bundle_files(folder: Path, limit: int | None) -> tuple[list[Path], list[Path]]:
    """(shared bundles: hospitalInformation*, practitionerInformation*; patient bundles)."""
    files = sorted(folder.glob("*.json"))
    shared = [p for p in files if p.name.startswith(("hospitalInformation", "practitionerInformation"))]
    patients = [p for p in files if p not in shared]
    return shared, patients[:limit] if limit else patients


@dataclass
class LoadResult:
    entries: int = 0
    bundles: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    client_cpu: float = 0.0


async def _post_bundles(
    base: str, bodies: list[tuple[str, bytes, int]], clients: int, out: LoadResult
) -> None:
    queue: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                name, body, count = queue.get_nowait()
                start = time.perf_counter()
                try:
                    # A new connection per bundle lets the kernel spread bundles over the workers.
                    resp = await client.post(
                        "/", content=body, headers={"Content-Type": FHIR_JSON, "Connection": "close"}
                    )
                except httpx.HTTPError as exc:
                    out.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                out.latencies.append(time.perf_counter() - start)
                if resp.status_code != 200:
                    out.failures.append(f"{name}: HTTP {resp.status_code}: {resp.text[:500]}")
                    continue
                entries = orjson.loads(resp.content).get("entry", [])
                if len(entries) != count:
                    out.failures.append(f"{name}: {len(entries)} response entries for {count} entries")
                    continue
                out.bundles += 1
                out.entries += count
                for e in entries:
                    loc = e.get("response", {}).get("location", "")
                    out.locations.append(loc.split("/_history", 1)[0])

        await asyncio.gather(*(worker() for _ in range(clients)))


def load_bundles(base: str, shared: list[Path], patients: list[Path], clients: int) -> LoadResult:
    """POST every bundle as a transaction: the shared ones first, then the patients, `clients` at a time."""

    def read(paths: list[Path]) -> list[tuple[str, bytes, int]]:
        out = []
        for p in paths:
            raw = p.read_bytes()
            out.append((p.name, raw, len(orjson.loads(raw).get("entry", []))))
        return out

    first, rest = read(shared), read(patients)
    result = LoadResult()
    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(_post_bundles(base, first, clients, result))
    asyncio.run(_post_bundles(base, rest, clients, result))
    result.seconds = time.perf_counter() - t0
    result.client_cpu = time.process_time() - cpu0
    return result


# ---------------------------------------------------------------- wrk
_WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p95_us\": %d, \"p99_us\": %d, " ..
    "\"max_us\": %d, \"mean_us\": %f, \"err_connect\": %d, \"err_read\": %d, \"err_write\": %d, " ..
    "\"err_status\": %d, \"err_timeout\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

_WRK_SEED = """
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("tid", counter) end
init = function(args) math.randomseed(os.time() * 1000 + (tid or 0)) end
"""


def lua_list(name: str, items: list[str]) -> str:
    """A Lua table literal of strings."""
    return f"local {name} = {{\n" + ",\n".join(json.dumps(i) for i in items) + "\n}\n"


def read_script(paths: list[str]) -> str:
    """GET a random one of `paths`."""
    return (
        lua_list("paths", paths)
        + _WRK_SEED
        + """
local n = #paths
local headers = {["Accept"] = "application/fhir+json"}
request = function() return wrk.format("GET", paths[math.random(n)], headers) end
"""
        + _WRK_DONE
    )


def create_script(patients: list[str]) -> str:
    """POST an Observation (heart rate) about a random loaded Patient."""
    body = orjson.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                            "display": "Vital Signs",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                "text": "Heart rate",
            },
            "subject": {"reference": "@SUBJECT@"},
            "effectiveDateTime": "2024-05-01T10:00:00+00:00",
            "issued": "2024-05-01T10:00:00.000+00:00",
            "valueQuantity": {
                "value": 72,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        }
    ).decode()
    head, tail = body.split('"@SUBJECT@"')
    head = head.replace('"value":72', '"value":@V@')
    tail = tail.replace('"value":72', '"value":@V@')
    return (
        lua_list("patients", patients)
        + _WRK_SEED
        + f"local head = {json.dumps(head)}\nlocal tail = {json.dumps(tail)}\n"
        + """
local n = #patients
local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json"}
request = function()
  local v = tostring(math.random(40, 180))
  local body = head:gsub("@V@", v) .. '"' .. patients[math.random(n)] .. '"' .. tail:gsub("@V@", v)
  return wrk.format("POST", "/Observation", headers, body)
end
"""
        + _WRK_DONE
    )


def run_wrk(
    url: str, script: str, connections: int, seconds: float, threads: int | None = None
) -> dict[str, Any]:
    """Run wrk with a Lua script; the figures its done() prints, plus req/s and CPU the wrk process used."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    threads = threads or min(connections, 2)
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        path,
        url,
    ]
    try:
        before = os.times()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        after = os.times()
    finally:
        os.unlink(path)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    out["errors"] = sum(v for k, v in out.items() if k.startswith("err_"))
    wrk_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    out["wrk_cpu_share"] = wrk_cpu / (out["duration_us"] / 1e6)
    return out


# ---------------------------------------------------------------- client capacity
_TRIVIAL = r"""
import asyncio, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\n\r\n{}"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rindex(b"\r\n\r\n") + 4:]
            self.t.write(RESP * n)
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()
asyncio.run(main())
"""


def client_capacity(seconds: float) -> dict[str, Any]:
    """What wrk can drive on this machine: GETs against a trivial raw asyncio responder (fixed bytes)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _TRIVIAL, str(port)], start_new_session=True)
    try:
        for _ in range(50):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        return run_wrk(f"http://127.0.0.1:{port}", read_script(["/Patient/x"]), 8, seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


# ---------------------------------------------------------------- one run
def one_run(
    args: argparse.Namespace, workers: int, shared: list[Path], patients: list[Path]
) -> dict[str, Any]:
    """Everything for one worker count on a fresh database."""
    backend = "sqlite" if args.sqlite else "postgresql"
    db = Database(sqlite=args.sqlite, admin=args.pg_admin, settings=args.pg_set)
    url = db.create()
    result: dict[str, Any] = {"workers": workers, "backend": backend}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prof_dir = RESULTS / f"profile-{backend}-w{workers}-{stamp}" if args.profile else None
    if prof_dir:
        prof_dir.mkdir(parents=True, exist_ok=True)
    ext = {"raw": "txt", "flamegraph": "svg", "speedscope": "json"}.get(args.profile or "", "")

    def prof(name: str) -> Path | None:
        return prof_dir / f"{name}.{ext}" if prof_dir else None

    try:
        print(f"\n== {backend}, {workers} worker(s), database {db.name if not args.sqlite else url}")
        with running_server(url, workers, args.server_root) as (base, proc):
            sampler = Sampler(proc.pid, db)
            sampler.start()
            try:
                load: dict[str, Any] = {}
                with phase(sampler, "load", load), profiling(proc.pid, prof("load"), args.profile or ""):
                    loaded = load_bundles(base, shared, patients, args.clients)
                for failure in loaded.failures:
                    print(f"  FAILED {failure}")
                load.update(
                    bundles=loaded.bundles,
                    bundles_total=len(shared) + len(patients),
                    entries=loaded.entries,
                    seconds=loaded.seconds,
                    resources_per_s=loaded.entries / loaded.seconds,
                    bundle_p50_s=pct(loaded.latencies, 50),
                    bundle_p95_s=pct(loaded.latencies, 95),
                    failures=loaded.failures,
                    clients=args.clients,
                    client_cpu_s=loaded.client_cpu,
                )
                _per_op(load, loaded.entries)
                result["load"] = load
                print(
                    f"  load: {loaded.entries} resources in {loaded.bundles}/{len(shared) + len(patients)} "
                    f"bundles, {loaded.seconds:.1f} s, {loaded.entries / loaded.seconds:.0f} resources/s, "
                    f"CPU/resource: server {load['server_cpu_ms']:.2f} ms, db {load['db_cpu_ms']:.2f} ms, "
                    f"server CPU s by process {load['server_cpu_by_process'][:3]} (load {load['loadavg_after']})"
                )
                locations = [loc for loc in loaded.locations if loc]
                patient_refs = [loc for loc in locations if loc.startswith("Patient/")] or ["Patient/missing"]
                rng = random.Random(42)
                paths = ["/" + loc for loc in rng.sample(locations, min(len(locations), args.read_sample))]
                for clients in args.create_clients:
                    name = f"create_c{clients}"
                    figures: dict[str, Any] = {"connections": clients}
                    with phase(sampler, name, figures), profiling(proc.pid, prof(name), args.profile or ""):
                        figures.update(
                            run_wrk(
                                base, create_script(patient_refs), clients, args.duration, min(clients, 2)
                            )
                        )
                    _per_op(figures, figures["requests"])
                    result[name] = figures
                    _print_wrk(name, figures)
                if paths:
                    run_wrk(base, read_script(paths), args.read_clients, min(2.0, args.duration))  # warm-up
                    figures = {"connections": args.read_clients}
                    with (
                        phase(sampler, "read", figures),
                        profiling(proc.pid, prof("read"), args.profile or ""),
                    ):
                        figures.update(run_wrk(base, read_script(paths), args.read_clients, args.duration))
                    _per_op(figures, figures["requests"])
                    result["read"] = figures
                    _print_wrk("read", figures)
            finally:
                sampler.stop()
            result["rss_peak_bytes"] = sampler.peak
            result["rss_peak_by_phase"] = sampler.peaks
            result["db_size_bytes"] = db.size()
            if db.tmp is not None:
                result["db_files"] = {p.name: p.stat().st_size for p in db.tmp.iterdir()}
        files = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in result.get("db_files", {}).items())
        print(
            f"  peak RSS {sampler.peak / 2**20:.0f} MiB, database {result['db_size_bytes'] / 2**20:.0f} MiB"
            + (f" ({files})" if files else "")
        )
    finally:
        if args.keep_db and not args.sqlite:
            print(f"  kept database {db.name}")
        else:
            db.drop()
    return result


def _per_op(figures: dict[str, Any], ops: int) -> None:
    """CPU milliseconds per operation of the server and the database (load-independent cost)."""
    figures["server_cpu_ms"] = 1000 * figures["server_cpu_s"] / max(ops, 1)
    figures["db_cpu_ms"] = 1000 * figures["db_cpu_s"] / max(ops, 1)


def _print_wrk(name: str, f: dict[str, Any]) -> None:
    print(
        f"  {name}: {f['rps']:.0f} req/s, p50 {f['p50_us'] / 1000:.1f} ms, p95 {f['p95_us'] / 1000:.1f} ms, "
        f"errors {f['errors']}, CPU/request: server {f['server_cpu_ms']:.2f} ms, db {f['db_cpu_ms']:.2f} ms, "
        f"{f['db_backends_new']} new db connections (load {f['loadavg_after']})"
    )


# ---------------------------------------------------------------- report
def table(runs: list[dict[str, Any]], capacity: dict[str, Any] | None) -> str:
    """The figures of every run side by side."""

    def get(r: dict[str, Any], key: str, field: str, fmt: str, scale: float = 1.0) -> str:
        if key not in r or field not in r[key]:
            return "-"
        value = r[key][field]
        return format(value * scale if scale != 1.0 else value, fmt)

    def phase_rows(key: str, label: str, rate: str, unit: str) -> list[tuple[str, list[str]]]:
        rows = [(f"{label}: {unit}/s", [get(r, key, rate, ".0f") for r in runs])]
        if key != "load":
            rows += [
                (f"{label}: p50 ms", [get(r, key, "p50_us", ".1f", 1e-3) for r in runs]),
                (f"{label}: p95 ms", [get(r, key, "p95_us", ".1f", 1e-3) for r in runs]),
                (f"{label}: errors", [get(r, key, "errors", "d") for r in runs]),
            ]
        return [
            *rows,
            (f"{label}: server CPU ms/{unit[:-1]}", [get(r, key, "server_cpu_ms", ".2f") for r in runs]),
            (f"{label}: db CPU ms/{unit[:-1]}", [get(r, key, "db_cpu_ms", ".2f") for r in runs]),
            (f"{label}: loadavg", [r.get(key, {}).get("loadavg_after", "-") for r in runs]),
        ]

    rows: list[tuple[str, list[str]]] = [
        ("run", [r.get("label") or "-" for r in runs]),
        ("backend", [r["backend"] for r in runs]),
        ("workers", [str(r["workers"]) for r in runs]),
        ("load: bundles ok", [f"{r['load']['bundles']}/{r['load']['bundles_total']}" for r in runs]),
        ("load: resources", [str(r["load"]["entries"]) for r in runs]),
        *phase_rows("load", "load", "resources_per_s", "resources"),
        (
            "load: bundle p50 / p95 s",
            [f"{r['load']['bundle_p50_s']:.2f} / {r['load']['bundle_p95_s']:.2f}" for r in runs],
        ),
    ]
    for key in sorted((k for k in runs[0] if k.startswith("create_c")), key=lambda k: int(k[8:])):
        rows += phase_rows(key, f"create x{key[len('create_c') :]}", "rps", "requests")
    if "read" in runs[0]:
        rows += phase_rows("read", f"read x{runs[0]['read']['connections']}", "rps", "requests")
    rows += [
        ("peak server RSS MiB", [f"{r['rss_peak_bytes'] / 2**20:.0f}" for r in runs]),
        ("database MiB", [f"{r['db_size_bytes'] / 2**20:.0f}" for r in runs]),
    ]
    width = max(len(label) for label, _ in rows)
    cols = [max(len(v[i]) for _, v in rows) for i in range(len(runs))]
    lines = [
        f"{label:<{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(vals, cols, strict=True))
        for label, vals in rows
    ]
    if capacity:
        lines.append(
            f"load generator: wrk drove {capacity['rps']:.0f} req/s (p95 {capacity['p95_us'] / 1000:.2f} ms) "
            "against a trivial raw-asyncio responder with 8 connections on this machine"
        )
    return "\n".join(lines)


def check_tools(args: argparse.Namespace) -> None:
    """wrk (and py-spy when profiling) must be installed; say how to get them."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: bash scripts/system-packages bench (as root)")
    if (
        args.profile
        and not (Path(sys.executable).parent / "py-spy").exists()
        and shutil.which("py-spy") is None
    ):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    if not args.data.is_dir():
        raise SystemExit(f"no Synthea bundles at {args.data} (use --data DIR)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.rest", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sqlite", action="store_true", help="use the embedded SQLite store instead of PostgreSQL"
    )
    p.add_argument("--workers", default="1,2", help="uvicorn worker counts to run, comma separated (1,2)")
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"folder of Synthea bundles ({DEFAULT_DATA})"
    )
    p.add_argument("--limit", type=int, default=None, help="load only the first N patient bundles")
    p.add_argument("--clients", type=int, default=4, help="concurrent loading clients (4)")
    p.add_argument("--create-clients", default="1,8", help="concurrent clients for single creates (1,8)")
    p.add_argument("--read-clients", type=int, default=8, help="concurrent connections for reads (8)")
    p.add_argument("--read-sample", type=int, default=20000, help="distinct loaded resources to read (20000)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk phase (10)")
    p.add_argument("--pg-admin", default=PG_ADMIN, help=f"PostgreSQL admin URL ({PG_ADMIN})")
    p.add_argument("--keep-db", action="store_true", help="do not drop the PostgreSQL database afterwards")
    p.add_argument(
        "--pg-set", action="append", default=[], metavar="NAME=VALUE", help="a setting of the bench database"
    )
    p.add_argument(
        "--profile", choices=("raw", "flamegraph", "speedscope"), help="py-spy the server per phase"
    )
    p.add_argument("--no-capacity", action="store_true", help="skip the load generator capacity check")
    p.add_argument("--server-root", type=Path, help="run the server from this source tree (a baseline copy)")
    p.add_argument("--label", default="", help="a name for this run in the results file")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in str(args.workers).split(",") if w]
    args.create_clients = [int(c) for c in str(args.create_clients).split(",") if c]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 when any bundle failed."""
    args = parse_args(argv)
    check_tools(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shared, patients = bundle_files(args.data, args.limit)
    print(
        f"{len(shared)} shared + {len(patients)} patient bundles from {args.data}; {os.cpu_count()} CPUs, load {loadavg()}"
    )
    capacity = None if args.no_capacity else client_capacity(min(5.0, args.duration))
    if capacity:
        print(f"load generator capacity: wrk {capacity['rps']:.0f} req/s against a trivial responder")
    runs = [one_run(args, w, shared, patients) for w in args.workers]
    for r in runs:
        r["label"] = args.label
    print("\n" + table(runs, capacity))
    backend = "sqlite" if args.sqlite else "postgresql"
    out = RESULTS / f"rest-{backend}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "loadavg_end": loadavg(),
        "client_capacity": capacity,
        "runs": runs,
        "targets": {
            "load_resources_per_s": 1000,
            "create_c8_per_s": 500,
            "read_per_s": 1500,
            "read_p95_ms": 20,
        },
    }
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"results: {out}")
    failed = any(r["load"]["failures"] for r in runs)
    if failed:
        print("SOME BUNDLES FAILED (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
