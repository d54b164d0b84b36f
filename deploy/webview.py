"""The live web view ``agora up`` serves (its address is printed and kept in ``ready.json``):
the global schedule as a Gantt of what really runs, per site and node, updating every
second; job and instance states; each coordinator replica's view, primary, committed and
stable sequence numbers, view changes and decision latency; each site agent's messages sent
and suppressed and its decisions.

Built on kept libraries: aiohttp serves it (on the service's own event loop), Plotly draws
the chart (its ``plotly.min.js``, served from the installed ``plotly`` package: nothing is
fetched from the internet). The page (``deploy/web/``) asks ``/api/state`` once a second; the
server answers from the committed ledger ``agora up`` follows as the operator (an authorised
reader: a signed ledger read, then the signed update stream), the replicas' status (signed
reads) and the agents' and replicas' Prometheus endpoints.
Text that came from users (job and task ids) is put on the page as text, never as HTML.

It listens on ``web.host`` (default 127.0.0.1: whoever can reach it sees the whole schedule,
so keep it on loopback or behind your own proxy) at ``web.port`` (0: a free port). Bound to
loopback, it answers only requests addressed to a loopback name (no DNS rebinding), and every
answer carries a Content-Security-Policy that allows the page's own scripts only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agora.agents.loopback import LOOPBACK, loopback_host

log = logging.getLogger("agora.webview")


class _MalformedRequests(logging.Filter):
    """aiohttp answers a malformed request (a line or header too long, no Host) with 400 and
    logs it with its whole traceback: anyone who could reach the port filled the service's
    log. Instead: one line, at most every ``every_s``, counting those in between."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s, self.last, self.count = every_s, float("-inf"), 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        self.count += 1
        now = time.monotonic()
        if now - self.last < self.every_s:
            return False
        record.msg = (f"web view: refused {self.count} malformed request(s) since the last "
                      f"such line; the latest: {type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:160]}")
        record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self.last, self.count = now, 0
        return True


def quiet_malformed_requests() -> None:
    """Install ``_MalformedRequests`` on aiohttp's server log (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server.filters):
        server.addFilter(_MalformedRequests())

PAGE_DIR = Path(__file__).parent / "web"
MAX_JOBS = 200
"""The most recent jobs the view shows (the whole ledger stays readable with agora jobs)."""
MIN_REFRESH_S = 0.5
"""Answers are shared this long, so that many open pages cost one status read."""
SECURITY_HEADERS = {
    # the page's own scripts only (Plotly sets inline styles); no framing, no sniffing
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def gantt_bars(rows: list[dict], now: float) -> list[dict]:
    """One bar per run of an instance that really started: running ones until ``now``,
    ended ones from their start to their end (``agora jobs`` rows, per instance)."""
    bars = []
    for job in rows:
        for task in job["tasks"]:
            for i in task["instances"]:
                if i["state"] == "running" and i.get("since"):
                    bars.append({"job": job["job"], "task": task["task"],
                                 "instance": i["instance"], "node": i["node"],
                                 "site": i["site"], "start": i["since"], "end": now,
                                 "state": "running"})
                elif i.get("last_start") and i.get("last_end") and i.get("ran_on"):
                    bars.append({"job": job["job"], "task": task["task"],
                                 "instance": i["instance"], "node": i["ran_on"],
                                 "site": i["ran_on"].split("/")[0], "start": i["last_start"],
                                 "end": i["last_end"],
                                 "state": "done" if i.get("exit_code") == 0 else "failed"})
    return with_rows(bars)


def with_rows(bars: list[dict]) -> list[dict]:
    """Each bar gets the chart row it is drawn in: its node's, or a further row of that node
    (``"east/n0 (2)"``) where it overlaps a bar already drawn there -- instances running at
    once on one node stay visible side by side, in as few rows as they need (greedy interval
    colouring, earliest start first)."""
    lanes: dict[str, list[float]] = {}
    for b in sorted(bars, key=lambda b: (b["start"], b["job"], b["task"], b["instance"])):
        ends = lanes.setdefault(b["node"], [])
        k = next((k for k, end in enumerate(ends) if end <= b["start"]), len(ends))
        if k == len(ends):
            ends.append(b["end"])
        else:
            ends[k] = b["end"]
        b["row"] = b["node"] if k == 0 else f"{b['node']} ({k + 1})"
    return bars


def chart_rows(nodes: list[str], bars: list[dict]) -> list[str]:
    """The chart's rows top to bottom: every node in the cluster's order (sites together),
    each followed by its further rows."""
    extra: dict[str, set[str]] = {}
    for b in bars:
        if b["row"] != b["node"]:
            extra.setdefault(b["node"], set()).add(b["row"])
    return [r for n in nodes for r in [n, *sorted(extra.get(n, ()), key=lambda r: (len(r), r))]]


def job_summaries(rows: list[dict]) -> list[dict]:
    """Per job: outcome, its instances counted by state, the sites it runs on."""
    out = []
    for job in rows:
        counts: dict[str, int] = {}
        sites = set()
        for task in job["tasks"]:
            for i in task["instances"]:
                counts[i["state"]] = counts.get(i["state"], 0) + 1
                if i.get("site"):
                    sites.add(i["site"])
        out.append({"job": job["job"], "origin": job["origin"], "outcome": job["outcome"],
                    "reason": job["reason"], "instances": counts, "running_on": sorted(sites)})
    return out


def replica_rows(statuses: list, samples: dict[int, dict[str, float]] | None) -> list[dict]:
    """Per replica: its status (or the error reaching it) and the view changes it installed,
    from its own metrics (``samples``: replica id -> its samples; a replica missing there,
    or None when metrics are off, shows no count rather than 0)."""
    from agora.agents.metrics import total

    rows = []
    for k, s in enumerate(statuses):
        if isinstance(s, str):
            rows.append({"replica": k, "error": s})
            continue
        mine = None if samples is None else samples.get(s.replica)
        rows.append({"replica": s.replica, "view": s.view, "primary": s.primary,
                     "last_committed": s.last_committed, "last_executed": s.last_executed,
                     "stable_checkpoint": s.stable_checkpoint, "round": s.round,
                     "allocations": s.allocations,
                     "view_changes": None if mine is None else
                     int(total(mine, "agora_view_changes_total", replica=s.replica)),
                     "decision_latency_ms_p50": round(s.decision_latency_ms_p50, 1),
                     "decision_latency_ms_p99": round(s.decision_latency_ms_p99, 1),
                     "decision_latency_samples": s.decision_latency_samples,
                     # the same from ready: without the wait for capacity (round_keeper)
                     "decision_latency_ready_ms_p50": round(s.decision_latency_ready_ms_p50, 1),
                     "decision_latency_ready_ms_p99": round(s.decision_latency_ready_ms_p99, 1)})
    return rows


def replica_of(samples: dict[str, float]) -> int | None:
    """The replica whose metrics ``samples`` are (its ``agora_view`` gauge's label)."""
    import re

    for key in samples:
        m = re.match(r'agora_view\{.*replica="(\d+)"', key)
        if m:
            return int(m.group(1))
    return None


def agent_rows(scraped: dict[str, dict | None]) -> list[dict]:
    """Per site agent: messages sent and suppressed, decisions, mean decision time."""
    from agora.agents.metrics import total

    rows = []
    for site, m in sorted(scraped.items()):
        if m is None:
            rows.append({"site": site, "error": "metrics not reachable"})
            continue
        n = total(m, "agora_decision_latency_seconds_count")
        rows.append({"site": site,
                     "messages_sent": int(total(m, "agora_messages_sent_total")),
                     "messages_suppressed": int(total(m, "agora_messages_suppressed_total")),
                     "decisions": int(total(m, "agora_decisions_total")),
                     "decision_ms_mean": round(1e3 * total(
                         m, "agora_decision_latency_seconds_sum") / n, 2) if n else None})
    return rows


class WebView:
    """The view of one running system (``deploy.launch.System``), served on its loop. The
    jobs and runs come from the ledger that ``agora up`` already follows (``follower``: its
    state dict, kept by ``coordinator.ledger_follow``), so an open page adds no reads of the
    schedule; each refresh asks the replicas for their status (signed reads) and scrapes the
    metrics endpoints."""

    def __init__(self, system, cluster, follower: dict, out: Path, replica_targets: list[str],
                 agent_targets: dict[str, str]) -> None:
        self.system = system
        self.follower = follower
        self.sites = list(cluster.site_names)
        self.nodes = [n.name for n in cluster.nodes]
        self.out = out
        self.replica_targets = replica_targets
        self.agent_targets = agent_targets
        self._cached: tuple[float, dict] | None = None
        self._reading: asyncio.Future | None = None
        self._runner = None
        self._loopback_only = False
        self.url: str | None = None
        # its own threads for the run folders and the scrapes: the loop's default pool is
        # shared with everything else on the service's loop
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agora-web")
        self._files: dict = {}       # what finished runs' folders said (job_table.job_rows)

    # ---- serving -------------------------------------------------------------------------
    def app(self):
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/static/plotly.min.js", self._plotly)
        app.router.add_static("/static/", PAGE_DIR)
        return app

    async def start(self, host: str, port: int) -> str:
        from aiohttp import web

        from agora.deploy.web_serving import IDLE_S, LINGER_S, CappedSite

        quiet_malformed_requests()
        runner = web.AppRunner(self.app(), access_log=None, keepalive_timeout=IDLE_S,
                               lingering_time=LINGER_S)
        await runner.setup()
        try:
            await CappedSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0][1]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = f"[{shown}]" if ":" in shown else shown
        if host in LOOPBACK:
            # bound to loopback: only a page that asked for a loopback name may read it (a
            # page elsewhere that rebinds its own name to 127.0.0.1 may not)
            self._loopback_only = True
        self.url = f"http://{shown}:{bound}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _guard(self, request, handler):
        """Loopback-bound: only requests addressed to a loopback name; no request body
        (``web_serving``); security headers on every answer, refusals too."""
        from aiohttp import web

        from agora.deploy.web_serving import body_refused

        response = body_refused(request)
        if response is None and self._loopback_only and not loopback_host(request.host or ""):
            response = web.Response(status=421, text="this view answers on its loopback "
                                    "address only (web.host)\n")
        if response is None:
            try:
                response = await handler(request)
            except web.HTTPException as e:
                e.headers.update(SECURITY_HEADERS)
                raise
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _index(self, _request):
        from aiohttp import web

        return web.FileResponse(PAGE_DIR / "index.html")

    async def _plotly(self, _request):
        from aiohttp import web

        import plotly

        path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})

    async def _state(self, _request):
        from aiohttp import web

        try:
            return web.json_response(await self.state())
        except Exception as e:  # noqa: BLE001 - the page shows it, the service goes on
            log.debug("web view state failed", exc_info=True)
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=503)

    # ---- the state the page draws -------------------------------------------------------
    async def state(self) -> dict:
        """The page's state; fresh answers are shared for MIN_REFRESH_S after they arrive,
        and requests that come while one is being read wait for that one."""
        if self._cached is not None and time.time() - self._cached[0] < MIN_REFRESH_S:
            return self._cached[1]
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        try:
            answer = await asyncio.shield(reading)
        finally:
            if reading.done() and self._reading is reading:
                self._reading = None
        self._cached = (time.time(), answer)
        return answer

    async def _read(self) -> dict:
        from agora.agents.ledger_codec import job_record_bytes
        from agora.deploy.job_table import job_rows
        from agora.protos.agora.v1 import coordinator_pb2 as pb

        now = time.time()
        ledger = self.follower.get("ledger")
        view = pb.LedgerView(version=self.follower.get("version", 0))
        if ledger is not None:         # on the loop: the follower changes it between awaits
            jobs = list(ledger.jobs.values())[-MAX_JOBS:]
            view.jobs.extend(pb.JobRecord.FromString(job_record_bytes(js, 0)) for js in jobs)
        loop = asyncio.get_running_loop()
        rows, statuses, replicas, agents = await asyncio.gather(
            loop.run_in_executor(self._pool, job_rows, view, self.nodes, self.out, None,
                                 self._files),
            self.system.operator.status(), self._scrape_all(self.replica_targets),
            self._scrape_all(self.agent_targets))
        samples = None
        if self.replica_targets:
            samples = {r: m for m in replicas.values() if m
                       for r in [replica_of(m)] if r is not None}
        bars = gantt_bars(rows, now)
        return {"now": now, "version": view.version, "sites": self.sites, "nodes": self.nodes,
                "rows": chart_rows(self.nodes, bars), "jobs": job_summaries(rows), "bars": bars,
                "replicas": replica_rows(statuses, samples), "agents": agent_rows(agents)}

    async def _scrape_all(self, targets) -> dict:
        from agora.agents.metrics import scrape

        keys = list(targets) if isinstance(targets, dict) else list(range(len(targets)))
        urls = [f"http://{targets[k]}/metrics" for k in keys]
        loop = asyncio.get_running_loop()

        def one(url):
            try:
                return scrape(url, timeout=2.0)
            except Exception:  # noqa: BLE001 - an endpoint restarting: shown as unreachable
                return None

        got = await asyncio.gather(*(loop.run_in_executor(self._pool, one, u) for u in urls))
        return dict(zip(keys, got))
