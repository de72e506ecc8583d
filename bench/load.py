"""Load and fault test: N clients for T seconds against the page's search endpoint, the gRPC
reranker, and an Elasticsearch node's `_search` with the shopsearch rescore clause (the plugin
path), with malformed and oversized requests mixed in, while the reranker is killed and
restarted, a model rolls out, the node's reranker target changes, and Elasticsearch is stopped and
started.

Bounded: at most `max_requests` requests, `seconds` of load plus at most `recovery_s` more while
waiting for the stack to recover, loopback addresses only; it stops by itself.

Every request ends in one of:
- reranked: the page answered with the reranked order, or found nothing to rerank (or gRPC answered OK);
- fallback: the page answered with the BM25 order and said why; or the plugin kept the BM25 order
  (its reason, from each hit's structured outcome `fields._shopsearch`, is counted apart);
- error: a clear refusal: a 4xx with a one-line reason (bad input), a 503 with a one-line reason
  (Elasticsearch down), or a gRPC status with its reason (INVALID_ARGUMENT, UNAVAILABLE, ...);
- failed: no answer (connection refused, timeout), a 500, an answer that is not the page's JSON,
  gRPC INTERNAL/UNKNOWN, or a search with a failed shard or hits without their outcome.
A request is *hung* when its answer took longer than its budget plus `slack_ms` (the load
generator and three servers share two cores), whatever the answer was.

Pass: nothing failed, nothing hung, and after the last fault was undone both the page and gRPC
gave reranked answers again (the times to that are reported), with most of the page's normal
requests of the final seconds reranked.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from bench.stats import Stats, stats
from reranker.client import Candidate, RerankError

OUTCOMES = ("reranked", "fallback", "error", "failed")
CHANNELS = ("web", "grpc", "plugin")
LOOPBACK = ("127.", "localhost", "[::1]")


def check_loopback(address: str) -> None:
    host = urllib.parse.urlsplit(address if "//" in address else f"//{address}").hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise ValueError(f"the load test only targets loopback addresses, not {address!r}")


@dataclass
class Fault:
    at_s: float  # when, from the start of the load (it waits for the fault before it)
    name: str
    action: Callable[[], object]
    opens: str = ""  # a window of the run (reported apart) that begins when this fault starts
    closes: str = ""  # ... and one that ends when this fault is done


@dataclass
class FaultRecord:
    name: str
    at_s: float
    took_s: float
    error: str = ""


@dataclass
class Record:
    sent_s: float
    channel: str  # "web" or "grpc"
    shape: str  # "normal", "malformed" or "oversized"
    outcome: str  # one of OUTCOMES
    ms: float
    detail: str  # status code / gRPC code and reason, shortened
    hung: bool = False
    version: str = ""  # the model version that scored it (reranked answers)
    reason: str = ""  # a fallback's reason (the plugin's: unavailable, deadline_exceeded, ...)


@dataclass
class LoadConfig:
    web_url: str | None  # None: no client of the page
    grpc_target: str | None
    queries: list[str]
    lists: dict[str, list[Candidate]] = field(default_factory=dict)  # per query: BM25 candidates for gRPC
    clients: int = 8
    grpc_clients: int = 2  # of `clients`, how many call gRPC directly
    seconds: float = 60.0
    rate_per_client: float = 4.0  # requests a second each (paced, not closed-loop)
    max_requests: int = 20_000
    bad_share: float = 0.15  # malformed or oversized, half and half
    web_budget_ms: float = 1500.0  # the page's own budget (settings.web.budget_ms)
    grpc_deadline_ms: float = 1000.0
    slack_ms: float = 1000.0
    recovery_s: float = 90.0
    seed: int = 7
    balancing: object = None  # reranker.client.Balancing of the gRPC clients (None: its defaults)
    # The plugin path: `plugin_clients` of `clients` search `plugin_index` on the node at `plugin_url`
    # with the rescore clause (window `plugin_window`, the rerank depth) and the outcome ext.
    plugin_url: str | None = None
    plugin_index: str = ""
    plugin_clients: int = 0
    plugin_window: int = 100
    plugin_budget_ms: float = 1500.0  # a search's own timeout (the node's deadline is far shorter)


@dataclass
class LoadReport:
    config: dict
    seconds: float
    sent: int
    outcomes: dict[str, dict[str, int]]  # channel -> outcome -> count
    shapes: dict[str, dict[str, int]]  # shape -> outcome -> count
    hung: int
    latency_ms: dict[str, Stats]  # "web", "grpc", and per web outcome
    faults: list[FaultRecord]
    recovered: bool
    recovery_s: dict[str, float | None]  # after the last fault: first reranked answer, per channel
    final_reranked_share: float | None
    errors_seen: dict[str, int]  # detail -> count, the most common ones
    passed: bool
    reasons: list[str]
    # per window of the faults ("one replica down", "rolling reload"): its span and, per channel, the
    # outcomes of its normal requests (the fallback count there is the point of replicas)
    windows: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # model version -> reranked answers naming it
    fallback_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # channel -> reason -> count
    hung_seen: list[str] = field(default_factory=list)  # the first hung requests: when, channel, ms, answer


# -- one request of each kind ------------------------------------------------------------------------

def web_request(base: str, query: str, shape: str, rng: random.Random, timeout_s: float) -> tuple[str, str, str]:
    """(outcome, detail, model version) of one GET to the page's JSON endpoint."""
    if shape == "normal":
        params = {"q": query, "page": str(rng.choice([1, 1, 1, 2, 3]))}
        url = f"{base}/api/search?{urllib.parse.urlencode(params)}"
    elif shape == "malformed":
        url = base + rng.choice([
            "/api/search", "/api/search?q=", "/api/search?q=%20%20", f"/api/search?q={urllib.parse.quote(query)}&page=abc",
            f"/api/search?q={urllib.parse.quote(query)}&page=0", f"/api/search?q={urllib.parse.quote(query)}&page=-5",
            "/api/search?q=%ff%fe%00", "/api/search?q=drill&page=1e9", "/api/nothing-here",
        ])
    else:  # oversized: a long query, a URL past the server's request-line limit
        url = base + rng.choice([f"/api/search?q={'drill%20' * 400}", f"/api/search?q={'x' * 70_000}"])
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body, status = response.read(), response.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    except (OSError, ValueError) as err:  # refused, reset, timed out
        return "failed", f"no answer ({type(err).__name__})", ""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status == 200 and isinstance(answer, dict) and "status" in answer:
        if answer.get("total_hits") == 0:
            return "reranked", "200 no hits (nothing to rerank)", ""
        if answer["status"] in ("reranked", "partial"):
            return "reranked", "200 reranked", str(answer.get("model") or "").rpartition(" ")[2]
        return "fallback", f"200 fallback: {answer.get('notice', '')[:80]}", ""
    if 400 <= status < 500 or status == 503:
        reason = answer.get("error") or answer.get("detail") if isinstance(answer, dict) else body[:80].decode(errors="replace")
        return "error", f"{status} {str(reason)[:80]}", ""
    return "failed", f"{status} {body[:80].decode(errors='replace')}", ""


def grpc_request(link, query: str, candidates: list[Candidate], shape: str, rng: random.Random,
                 timeout_s: float) -> tuple[str, str, str]:
    if shape == "normal":
        query_sent, sent = query, candidates
    elif shape == "malformed":
        kind = rng.randrange(4)
        query_sent, sent = query, list(candidates)
        if kind == 0:
            query_sent = "   "
        elif kind == 1 and len(sent) > 1:
            sent[1] = Candidate(sent[0].product_id, sent[1].bm25, sent[1].bm25_rank)
        elif kind == 2:
            sent[0] = Candidate(sent[0].product_id, float("nan"), 1)
        else:
            sent = []
    else:
        kind = rng.randrange(3)
        query_sent, sent = query, candidates
        if kind == 0:
            sent = [Candidate(f"x{i}", 1.0, i + 1) for i in range(5000)]  # more than the server takes
        elif kind == 1:
            sent = [Candidate(c.product_id, c.bm25, c.bm25_rank, "long title " * 500) for c in candidates[:5]]
        else:
            query_sent = "drill " * 2000
    try:
        result = link.rerank(query_sent, sent, False, timeout_s)
    except RerankError as err:
        outcome = "failed" if err.code.name in ("INTERNAL", "UNKNOWN") else "error"
        return outcome, f"{err.code.name}: {err.details[:80]}", ""
    return "reranked", "OK partial" if result.partial else "OK", result.model_version


def plugin_request(base: str, index: str, query: str, window: int, shape: str, rng: random.Random,
                   timeout_s: float, wait_s: float) -> tuple[str, str, str, str]:
    """(outcome, detail, model version, fallback reason) of one `_search` with the shopsearch rescore
    clause, each hit's outcome read from `fields._shopsearch` (es_config/retrieval.py's contract);
    `timeout_s` is the search's own timeout, `wait_s` how long the client waits for an answer."""
    from es_config.query import bm25_query
    from es_config.retrieval import OUTCOME_EXT, OUTCOME_FIELD

    rescore: dict = {"query_text": query}
    if shape == "malformed":
        rescore = rng.choice([{}, {"query_text": "  "}, {"query_text": query, "send_text": "yes"},
                              {"query_text": query, "target": "10.0.0.1:1"}])
    elif shape == "oversized":
        window = rng.choice([1001, 100_000])  # past any max_window (at most 1000) and the index's rescore limit
    body = {"query": bm25_query(query), "size": 10, "_source": False, "timeout": f"{int(1000 * timeout_s)}ms",
            "rescore": {"window_size": window, "shopsearch": rescore}, "ext": {OUTCOME_EXT: {}}}
    request = urllib.request.Request(f"{base}/{index}/_search", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=wait_s) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    except (OSError, ValueError) as err:
        return "failed", f"no answer ({type(err).__name__})", "", ""
    try:
        answer = json.loads(raw)
    except ValueError:
        return "failed", f"{status} not JSON", "", ""
    if status != 200:
        reason = ((answer.get("error") or {}).get("reason") if isinstance(answer.get("error"), dict)
                  else answer.get("error")) or ""
        outcome = "error" if 400 <= status < 500 else "failed"
        return outcome, f"{status} {str(reason)[:80]}", "", ""
    if answer.get("_shards", {}).get("failed") or answer.get("timed_out"):
        return "failed", f"200 with failed shards: {json.dumps(answer.get('_shards'))[:80]}", "", ""
    hits = answer["hits"]["hits"]
    if not hits:
        return "reranked", "200 no hits (nothing to rerank)", "", ""
    outcomes = [((h.get("fields") or {}).get(OUTCOME_FIELD) or [None])[0] for h in hits]
    if any(o is None for o in outcomes):
        return "failed", "200 hits without their outcome", "", ""
    placed = [o for o in outcomes if o.get("reranked")]
    if placed:
        return "reranked", "200 reranked", str(placed[0].get("model_version") or ""), ""
    reasons = Counter(o.get("reason") or "" for o in outcomes) - Counter({"past_window": len(outcomes)})
    reason = reasons.most_common(1)[0][0] if reasons else "past_window"
    return "fallback", f"200 BM25 order ({reason})", "", reason


# -- the run --------------------------------------------------------------------------------------

class LoadRun:
    def __init__(self, config: LoadConfig, faults: list[Fault], progress: Callable[[str], None] | None = None) -> None:
        for url in (config.web_url, config.plugin_url):
            if url:
                check_loopback(url)
        if config.grpc_target:
            from reranker.rolling import replica_addresses

            for address in replica_addresses(config.grpc_target):  # each replica of a balanced target
                check_loopback(address)
        if not config.queries:
            raise ValueError("the load test needs at least one query")
        self.config, self.faults, self.progress = config, faults, progress or (lambda _: None)
        self.records: list[Record] = []
        self.fault_records: list[FaultRecord] = []
        self.windows: dict[str, list] = {}  # name -> [from s, to s]
        self._lock = threading.Lock()
        self._sent = 0
        self._stop = threading.Event()
        self._faults_done = threading.Event()
        self._faults_done_at: float | None = None
        self._began = 0.0

    def _now(self) -> float:
        return time.monotonic() - self._began

    def _take_ticket(self) -> bool:
        with self._lock:
            if self._sent >= self.config.max_requests:
                return False
            self._sent += 1
            return True

    def _client(self, index: int, channel: str) -> None:
        from frontend.search import RerankerLink

        cfg = self.config
        rng = random.Random(cfg.seed * 1000 + index)
        link = RerankerLink(cfg.grpc_target, balancing=cfg.balancing) if channel == "grpc" else None
        interval = 1.0 / cfg.rate_per_client
        next_at = self._now() + rng.random() * interval
        budget_ms = {"web": cfg.web_budget_ms, "grpc": cfg.grpc_deadline_ms, "plugin": cfg.plugin_budget_ms}[channel]
        try:
            while not self._stop.is_set():
                wait = next_at - self._now()
                if wait > 0 and self._stop.wait(wait):
                    break
                next_at = max(next_at + interval, self._now())
                if not self._take_ticket():
                    break
                roll = rng.random()
                shape = "normal" if roll >= cfg.bad_share else "malformed" if roll < cfg.bad_share / 2 else "oversized"
                query = rng.choice(cfg.queries)
                sent = self._now()
                reason = ""
                if channel == "web":
                    outcome, detail, version = web_request(cfg.web_url, query, shape, rng,
                                                           (budget_ms + cfg.slack_ms) / 1000 + 5)
                elif channel == "plugin":
                    outcome, detail, version, reason = plugin_request(
                        cfg.plugin_url, cfg.plugin_index, query, cfg.plugin_window, shape, rng, budget_ms / 1000,
                        (budget_ms + cfg.slack_ms) / 1000 + 5)
                else:
                    outcome, detail, version = grpc_request(link, query, cfg.lists.get(query, []) or
                                                            [Candidate("none", 1.0, 1)], shape, rng, budget_ms / 1000)
                ms = 1000 * (self._now() - sent)
                record = Record(sent, channel, shape, outcome, ms, detail, hung=ms > budget_ms + cfg.slack_ms,
                                version=version, reason=reason)
                with self._lock:
                    self.records.append(record)
        finally:
            if link is not None:
                link.close()

    def _run_faults(self) -> None:
        for fault in self.faults:
            wait = fault.at_s - self._now()
            if wait > 0 and self._stop.wait(wait):
                return
            began = self._now()
            if fault.opens:
                self.windows[fault.opens] = [round(began, 2), None]
            self.progress(f"{began:5.1f} s  {fault.name}")
            error = ""
            try:
                fault.action()
            except Exception as err:  # recorded: a fault action that fails is itself a finding
                error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                self.progress(f"        {fault.name} failed: {error}")
            self.fault_records.append(FaultRecord(fault.name, round(began, 2), round(self._now() - began, 2), error))
            if fault.closes in self.windows:
                self.windows[fault.closes][1] = round(self._now(), 2)
        self._faults_done_at = self._now()
        self._faults_done.set()
        self.progress(f"{self._faults_done_at:5.1f} s  all faults done; waiting for recovery")

    def _recovered_since(self, since: float) -> dict[str, float | None]:
        first: dict[str, float | None] = dict.fromkeys(CHANNELS)
        with self._lock:
            records = list(self.records)
        for r in records:
            if r.sent_s >= since and r.shape == "normal" and r.outcome == "reranked" and first[r.channel] is None:
                first[r.channel] = round(r.sent_s - since, 2)
        return first

    def _channels(self) -> list[str]:
        """Each client's channel: the gRPC ones first, then the plugin's, then the page's."""
        cfg = self.config
        grpc = min(cfg.grpc_clients, cfg.clients) if cfg.grpc_target else 0
        plugin = min(cfg.plugin_clients, cfg.clients - grpc) if cfg.plugin_url else 0
        web = cfg.clients - grpc - plugin if cfg.web_url else 0
        return ["grpc"] * grpc + ["plugin"] * plugin + ["web"] * web

    def run(self) -> LoadReport:
        cfg = self.config
        channels = self._channels()
        wanted = tuple(c for c in CHANNELS if c in channels)
        self._began = time.monotonic()
        threads = [threading.Thread(target=self._client, args=(i, channel), name=f"load-{i}", daemon=True)
                   for i, channel in enumerate(channels)]
        controller = threading.Thread(target=self._run_faults, name="faults", daemon=True)
        for t in threads:
            t.start()
        controller.start()
        hard_end = cfg.seconds + cfg.recovery_s
        while self._now() < hard_end:
            time.sleep(0.25)
            if self._now() < cfg.seconds or not self._faults_done.is_set():
                continue
            first = self._recovered_since(self._faults_done_at)
            if all(first[c] is not None for c in wanted) and self._now() >= max(cfg.seconds, self._faults_done_at + 5):
                break
            if self._sent >= cfg.max_requests:
                break
        self._stop.set()
        for t in threads:
            t.join(30)
        controller.join(5)
        return self._report(wanted)

    def _report(self, wanted: tuple[str, ...]) -> LoadReport:
        cfg = self.config
        records = list(self.records)
        outcomes: dict[str, dict[str, int]] = {}
        shapes: dict[str, dict[str, int]] = {}
        for r in records:
            outcomes.setdefault(r.channel, dict.fromkeys(OUTCOMES, 0))[r.outcome] += 1
            shapes.setdefault(r.shape, dict.fromkeys(OUTCOMES, 0))[r.outcome] += 1
        latency = {channel: stats([r.ms for r in records if r.channel == channel]) for channel in CHANNELS}
        for channel in ("web", "plugin"):
            for outcome in OUTCOMES:
                latency[f"{channel} {outcome}"] = stats([r.ms for r in records
                                                         if r.channel == channel and r.outcome == outcome])
        hung = sum(r.hung for r in records)
        failed = sum(r.outcome == "failed" for r in records)
        done_at = self._faults_done_at
        recovery = self._recovered_since(done_at) if done_at is not None else dict.fromkeys(CHANNELS)
        end = max((r.sent_s for r in records), default=0.0)
        # the channels that can fall back to BM25 (the page's, else the plugin's) give the final share
        final_channel = "web" if "web" in wanted else "plugin" if "plugin" in wanted else "grpc"
        final = [r for r in records if r.channel == final_channel and r.shape == "normal" and done_at is not None
                 and r.sent_s >= max(done_at, end - 5.0)]
        final_share = sum(r.outcome == "reranked" for r in final) / len(final) if final else None
        recovered = done_at is not None and all(recovery[c] is not None for c in wanted) \
            and final_share is not None and final_share >= 0.5
        problems = []
        if failed:
            problems.append(f"{failed} request(s) got no answer or a failure")
        if hung:
            problems.append(f"{hung} request(s) took longer than budget + {cfg.slack_ms:.0f} ms")
        if done_at is None:
            problems.append("the faults did not all run within the time limit")
        elif not recovered:
            problems.append(f"no recovery after the last fault (first reranked answer: {recovery}; "
                            f"reranked share of the final seconds: {final_share})")
        if any(f.error for f in self.fault_records):
            problems.append("a fault action failed: " + "; ".join(f"{f.name}: {f.error}" for f in self.fault_records if f.error))
        errors = Counter(r.detail for r in records if r.outcome in ("error", "failed", "fallback"))
        windows = {}
        for name, (start, end) in self.windows.items():
            end = end if end is not None else self._now()
            inside = [r for r in records if start <= r.sent_s <= end and r.shape == "normal"]
            windows[name] = {"from_s": start, "to_s": round(end, 2), **{
                channel: dict(Counter(r.outcome for r in inside if r.channel == channel)) for channel in CHANNELS}}
        versions = Counter(r.version for r in records if r.outcome == "reranked" and r.version)
        reasons: dict[str, dict[str, int]] = {}
        for r in records:
            if r.outcome == "fallback" and r.reason:  # the plugin's reasons (the page's notice is in errors_seen)
                by_reason = reasons.setdefault(r.channel, {})
                by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        return LoadReport(
            config={k: v for k, v in asdict(cfg).items() if k not in ("queries", "lists")} | {"queries": len(cfg.queries)},
            seconds=round(self._now(), 1), sent=len(records), outcomes=outcomes, shapes=shapes, hung=hung,
            latency_ms=latency, faults=self.fault_records, recovered=recovered, recovery_s=recovery,
            final_reranked_share=final_share, errors_seen=dict(errors.most_common(15)),
            passed=not problems, reasons=problems, windows=windows, versions=dict(versions),
            fallback_reasons=reasons,
            hung_seen=[f"{r.sent_s:.1f} s {r.channel} {r.ms:.0f} ms: {r.outcome} {r.detail}" for r in records if r.hung][:10],
        )


def as_dict(report: LoadReport) -> dict:
    return asdict(report)


def print_report(report: LoadReport, console) -> None:
    from rich.markup import escape  # answers quote "[shopsearch] ...": text, not markup
    from rich.table import Table

    table = Table(title=f"Load and fault test: {report.sent:,} requests in {report.seconds:.0f} s "
                        f"({report.config['clients']} clients)", title_justify="left")
    for column in ("channel / shape", "sent", *OUTCOMES):
        table.add_column(column, justify="left" if column == "channel / shape" else "right")
    for label, counts in [*report.outcomes.items(), *((f"  {k}", v) for k, v in report.shapes.items())]:
        table.add_row(label, str(sum(counts.values())), *(str(counts[o]) for o in OUTCOMES))
    console.print(table)
    lat = Table(title="latency, ms (from send to answer)", title_justify="left")
    for column in ("requests", "n", "p50", "p95", "p99", "max"):
        lat.add_column(column, justify="left" if column == "requests" else "right")
    for name, s in report.latency_ms.items():
        if s.n:
            lat.add_row(name, str(s.n), f"{s.p50:.1f}", f"{s.p95:.1f}", f"{s.p99:.1f}", f"{s.max:.1f}")
    console.print(lat)
    for f in report.faults:
        console.print(f"fault at {f.at_s:5.1f} s: {f.name} ({f.took_s:.1f} s){' FAILED: ' + f.error if f.error else ''}",
                      highlight=False)
    console.print(f"hung past budget + slack: {report.hung}; recovered: {report.recovered} "
                  f"(first reranked answer after the last fault: {report.recovery_s}; reranked share of the final "
                  f"5 s: {report.final_reranked_share if report.final_reranked_share is None else round(report.final_reranked_share, 3)})",
                  highlight=False)
    for name, w in report.windows.items():
        counts = "; ".join(f"{channel}: {sum(w[channel].values())} sent, {w[channel].get('fallback', 0)} fallback, "
                           f"{w[channel].get('failed', 0)} failed, {w[channel].get('error', 0)} error"
                           for channel in CHANNELS if w[channel])
        console.print(f"during {name} ({w['from_s']:.1f}-{w['to_s']:.1f} s), normal requests: {counts}", highlight=False)
    if report.hung_seen:
        console.print(escape("hung: " + "; ".join(report.hung_seen)), highlight=False)
    for channel, by_reason in report.fallback_reasons.items():
        console.print(f"{channel} fallbacks by reason: " + ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items())),
                      highlight=False)
    if report.versions:
        console.print("reranked answers by model version: " + ", ".join(f"{v} {n}" for v, n in report.versions.items()),
                      highlight=False)
    if report.errors_seen:
        console.print(escape("most common non-reranked answers: " + "; ".join(f"{n}x {d}" for d, n in report.errors_seen.items())),
                      highlight=False)
    console.print(f"[bold]{'PASS' if report.passed else 'FAIL'}[/bold]" + ("" if report.passed else ": " + escape("; ".join(report.reasons))))


# -- the faults of the demo stack ------------------------------------------------------------------------

def stack_faults(stack, serve_argv: list[str], target: str, node, seconds: float,
                 env: dict[str, str] | None = None) -> list[Fault]:
    """Kill -9 the reranker and start it again; stop Elasticsearch and start it again (when `node`,
    a LocalNode of this project, is given). Each start waits until the service is healthy."""
    from searchstack.stack import RERANKER, StackError, reranker_serving

    def kill_reranker() -> None:
        if not stack.kill(RERANKER):
            raise StackError("the reranker was not running")

    def start_reranker() -> None:
        stack.start(RERANKER, serve_argv, lambda: reranker_serving(target), timeout_s=300, env=env)

    faults = [Fault(0.15 * seconds, "kill -9 the reranker", kill_reranker),
              Fault(0.30 * seconds, "start the reranker (until SERVING)", start_reranker)]
    if node is not None:
        faults += [Fault(0.45 * seconds, "stop Elasticsearch", lambda: node.stop()),
                   Fault(0.55 * seconds, "start Elasticsearch (until healthy)", lambda: node.start())]
    return faults


def bm25_lists(es, alias: str, queries: list[str], depth: int) -> dict[str, list[Candidate]]:
    """Each query's BM25 top-`depth` as gRPC candidates (ids, scores, ranks; no text)."""
    from es_config import retrieval

    return retrieval.msearch(es, alias, {q: q for q in queries}, depth)


@dataclass
class Replica:
    name: str  # its name in the stack (searchstack.stack.replica_name)
    argv: list[str]  # its `shopsearch serve` command line
    address: str  # host:port


def replica_faults(stack, replicas: list[Replica], node, seconds: float, reload_artifact: str | None = None,
                   env: dict[str, str] | None = None) -> list[Fault]:
    """Several replicas behind one balanced target: SIGKILL the last one and start it again (the
    window "one replica down" runs from the kill until it is SERVING again: the others carry the
    traffic), then a rolling reload of all of them (`reload_artifact`, None: each its own), then
    Elasticsearch stopped and started (when `node` is given)."""
    from reranker.rolling import rolling_reload
    from searchstack.stack import StackError, reranker_serving

    if len(replicas) < 2:
        raise ValueError("replica faults need two replicas or more; use stack_faults for one")
    victim = replicas[-1]

    def kill() -> None:
        if not stack.kill(victim.name):
            raise StackError(f"{victim.name} was not running")

    def start() -> None:
        stack.start(victim.name, victim.argv, lambda: reranker_serving(victim.address), timeout_s=300, env=env)

    def roll() -> None:
        rolling_reload([r.address for r in replicas], reload_artifact, pause_s=0.5)

    faults = [Fault(0.15 * seconds, f"kill -9 {victim.name} ({victim.address})", kill, opens="one replica down"),
              Fault(0.30 * seconds, f"start {victim.name} again (until SERVING)", start, closes="one replica down"),
              Fault(0.45 * seconds, f"rolling reload of {len(replicas)} replicas", roll, opens="rolling reload",
                    closes="rolling reload")]
    if node is not None:
        faults += [Fault(0.65 * seconds, "stop Elasticsearch", lambda: node.stop()),
                   Fault(0.75 * seconds, "start Elasticsearch (until healthy)", lambda: node.start())]
    return faults


def plugin_target(node_url: str) -> str:
    """The target the node's plugin calls now (its `_shopsearch/stats`)."""
    with urllib.request.urlopen(f"{node_url}/_shopsearch/stats", timeout=30) as response:
        return json.loads(response.read()).get("target")


def set_plugin_target(node_url: str, target: str | None) -> None:
    """The node's `shopsearch.rerank.target`, changed live (a transient cluster setting; None: back to
    the node's own); done when the plugin's stats name the new target."""
    body = json.dumps({"transient": {"shopsearch.rerank.target": target}}).encode()
    request = urllib.request.Request(f"{node_url}/_cluster/settings", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"the node refused the target {target!r}: HTTP {response.status}")
    if target is not None and (named := plugin_target(node_url)) != target:
        raise RuntimeError(f"the node's plugin names {named!r}, not {target!r}")


def plugin_faults(stack, replicas: list[Replica], node_url: str, seconds: float, reload_artifact: str | None = None,
                  env: dict[str, str] | None = None) -> list[Fault]:
    """The replica faults (one replica SIGKILLed and started again, a rolling reload of a new model),
    then the node's reranker target changed live twice: to the first replica alone (the window
    "retargeted": the plugin's channel is rebuilt under traffic), and back to the node's own setting
    (all of them), leaving no transient setting behind."""
    addresses = [r.address for r in replicas]
    own: dict[str, str] = {}

    def to_one() -> None:
        own["target"] = plugin_target(node_url)
        set_plugin_target(node_url, addresses[0])

    def back() -> None:
        set_plugin_target(node_url, None)
        if (named := plugin_target(node_url)) != own.get("target"):
            raise RuntimeError(f"the node's plugin names {named!r}, not its own {own.get('target')!r}")

    return replica_faults(stack, replicas, None, seconds, reload_artifact, env=env) + [
        Fault(0.62 * seconds, f"retarget the node to {addresses[0]} alone", to_one, opens="retargeted"),
        Fault(0.78 * seconds, "retarget the node back to its own target (every replica)", back, closes="retargeted"),
    ]
