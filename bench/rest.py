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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("/work/shared/data/synthea-r4")
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


def tree_rss(root: int) -> int:
    """Resident set size in bytes of `root` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


class RssSampler(threading.Thread):
    """Samples the server tree's RSS every `interval` seconds; keeps the peak per phase."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = tree_rss(self.pid)
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    @property
    def peak(self) -> int:
        return max(self.peaks.values(), default=0)


# ---------------------------------------------------------------- database
@dataclass
class Database:
    """A fresh database for one run: a PostgreSQL database or a SQLite file; dropped afterwards."""

    sqlite: bool
    admin: str = PG_ADMIN
    name: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:10]}")
    tmp: Path | None = None

    def create(self) -> str:
        if self.sqlite:
            self.tmp = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
            return f"sqlite:///{self.tmp / 'fhir.db'}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self.admin.rsplit("/", 1)[0] + f"/{self.name}"

    def size(self) -> int:
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
def server_command() -> list[str]:
    """`fhir-server serve` from the same environment as this interpreter."""
    exe = Path(sys.executable).parent / "fhir-server"
    return [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "fhir_server.cli", "serve"]


@contextlib.contextmanager
def running_server(
    url: str, workers: int, extra_env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the server on a free port, wait until /metadata answers, stop it (its own group) at the end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": url,
        "FHIR_ALLOW_ANONYMOUS": "true",
        "FHIR_CHECK_REFERENCES": "true",
        "FHIR_BASE_URL": base,
        "FHIR_LOG_LEVEL": "warning",
        **extra_env,
    }
    cmd = [*server_command(), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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
    cmd += ["--nonblocking", "--rate", "200", "--format", fmt, "--output", str(out)]
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
                    resp = await client.post("/", content=body, headers={"Content-Type": FHIR_JSON})
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
    db = Database(sqlite=args.sqlite, admin=args.pg_admin)
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
        with running_server(url, workers, {}) as (base, proc):
            sampler = RssSampler(proc.pid)
            sampler.start()
            try:
                sampler.phase = "load"
                la = loadavg()
                with profiling(proc.pid, prof("load"), args.profile or ""):
                    loaded = load_bundles(base, shared, patients, args.clients)
                for failure in loaded.failures:
                    print(f"  FAILED {failure}")
                result["load"] = {
                    "bundles": loaded.bundles,
                    "bundles_total": len(shared) + len(patients),
                    "entries": loaded.entries,
                    "seconds": loaded.seconds,
                    "resources_per_s": loaded.entries / loaded.seconds,
                    "bundle_p50_s": pct(loaded.latencies, 50),
                    "bundle_p95_s": pct(loaded.latencies, 95),
                    "failures": loaded.failures,
                    "clients": args.clients,
                    "client_cpu_share": loaded.client_cpu / loaded.seconds,
                    "loadavg_before": la,
                    "loadavg_after": loadavg(),
                }
                print(
                    f"  load: {loaded.entries} resources in {loaded.bundles}/{len(shared) + len(patients)} "
                    f"bundles, {loaded.seconds:.1f} s, {loaded.entries / loaded.seconds:.0f} resources/s "
                    f"(load {loadavg()})"
                )
                locations = [loc for loc in loaded.locations if loc]
                patient_refs = [loc for loc in locations if loc.startswith("Patient/")] or ["Patient/missing"]
                rng = random.Random(42)
                paths = ["/" + loc for loc in rng.sample(locations, min(len(locations), args.read_sample))]
                for clients in args.create_clients:
                    name = f"create_c{clients}"
                    sampler.phase = name
                    la = loadavg()
                    with profiling(proc.pid, prof(name), args.profile or ""):
                        figures = run_wrk(
                            base, create_script(patient_refs), clients, args.duration, threads=min(clients, 2)
                        )
                    figures["loadavg_before"], figures["loadavg_after"] = la, loadavg()
                    result[name] = figures
                    _print_wrk(name, figures)
                sampler.phase = "read"
                if paths:
                    run_wrk(base, read_script(paths), args.read_clients, min(2.0, args.duration))  # warm-up
                    la = loadavg()
                    with profiling(proc.pid, prof("read"), args.profile or ""):
                        figures = run_wrk(base, read_script(paths), args.read_clients, args.duration)
                    figures["loadavg_before"], figures["loadavg_after"] = la, loadavg()
                    result["read"] = figures
                    _print_wrk("read", figures)
            finally:
                sampler.stop()
            result["rss_peak_bytes"] = sampler.peak
            result["rss_peak_by_phase"] = sampler.peaks
            result["db_size_bytes"] = db.size()
        print(
            f"  peak RSS {sampler.peak / 2**20:.0f} MiB, database {result['db_size_bytes'] / 2**20:.0f} MiB"
        )
    finally:
        if args.keep_db and not args.sqlite:
            print(f"  kept database {db.name}")
        else:
            db.drop()
    return result


def _print_wrk(name: str, f: dict[str, Any]) -> None:
    print(
        f"  {name}: {f['rps']:.0f} req/s, p50 {f['p50_us'] / 1000:.1f} ms, p95 {f['p95_us'] / 1000:.1f} ms, "
        f"errors {f['errors']} (load {f['loadavg_after']})"
    )


# ---------------------------------------------------------------- report
def table(runs: list[dict[str, Any]], capacity: dict[str, Any] | None) -> str:
    """The figures of every run side by side."""

    def wrk_rows(key: str, label: str) -> list[tuple[str, list[str]]]:
        return [
            (f"{label} /s", [f"{r[key]['rps']:.0f}" if key in r else "-" for r in runs]),
            (f"{label} p50 ms", [f"{r[key]['p50_us'] / 1000:.1f}" if key in r else "-" for r in runs]),
            (f"{label} p95 ms", [f"{r[key]['p95_us'] / 1000:.1f}" if key in r else "-" for r in runs]),
            (f"{label} errors", [str(r[key]["errors"]) if key in r else "-" for r in runs]),
        ]

    rows: list[tuple[str, list[str]]] = [
        ("backend", [r["backend"] for r in runs]),
        ("workers", [str(r["workers"]) for r in runs]),
        ("load: resources/s", [f"{r['load']['resources_per_s']:.0f}" for r in runs]),
        ("load: resources", [str(r["load"]["entries"]) for r in runs]),
        ("load: bundles ok", [f"{r['load']['bundles']}/{r['load']['bundles_total']}" for r in runs]),
        (
            "load: bundle p50 / p95 s",
            [f"{r['load']['bundle_p50_s']:.2f} / {r['load']['bundle_p95_s']:.2f}" for r in runs],
        ),
        ("load: loadavg after", [r["load"]["loadavg_after"] for r in runs]),
    ]
    for key in sorted(k for k in runs[0] if k.startswith("create_c")):
        rows += wrk_rows(key, f"create x{key[len('create_c') :]}")
    rows += wrk_rows("read", f"read x{runs[0].get('read', {}).get('connections', '')}".rstrip("x"))
    rows += [
        ("read: loadavg after", [r.get("read", {}).get("loadavg_after", "-") for r in runs]),
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
            "against a trivial raw-asyncio responder with 8 connections"
        )
    return "\n".join(lines)


def check_tools(args: argparse.Namespace) -> None:
    """wrk (and py-spy when profiling) must be installed; say how to get them."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
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
    p.add_argument("--read-clients", type=int, default=16, help="concurrent connections for reads (16)")
    p.add_argument("--read-sample", type=int, default=20000, help="distinct loaded resources to read (20000)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk phase (10)")
    p.add_argument("--pg-admin", default=PG_ADMIN, help=f"PostgreSQL admin URL ({PG_ADMIN})")
    p.add_argument("--keep-db", action="store_true", help="do not drop the PostgreSQL database afterwards")
    p.add_argument(
        "--profile", choices=("raw", "flamegraph", "speedscope"), help="py-spy the server per phase"
    )
    p.add_argument("--no-capacity", action="store_true", help="skip the load generator capacity check")
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
        if "read" in r:
            r["read"]["connections"] = args.read_clients
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
