# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NetBox REST client for locus.infra (private API).

Built on a plain ``requests`` session (pynetbox is not imported: it adds nothing here and its import
costs the start of every inventory build), with a fast read path for bulk lists: no OpenAPI schema
download, ``?fields=`` to fetch only
what is needed, ``count`` first (one object) and then all pages in parallel on a bounded pool, plain
``json.loads`` decoding, per-endpoint statistics, retries with jittered backoff on
retryable errors only, and errors that name the URL, endpoint and HTTP status.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

try:
    import requests
    from requests.adapters import HTTPAdapter

    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the controller's Python
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc

from ansible_collections.locus.infra.plugins.module_utils._retry import retry

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
V2_PREFIX = "nbt_"


class _Retryable(Exception):
    """A request worth another try: a connection error or a retryable status (``resp``)."""

    def __init__(self, error, resp):
        super().__init__(str(error or resp.status_code))
        self.error = error
        self.resp = resp

    def retry_after(self):
        value = self.resp.headers.get("Retry-After", "") if self.resp is not None else ""
        return float(value) if value.isdigit() else None


class NetBoxError(Exception):
    """A NetBox request failed; ``str()`` names the URL, the endpoint and the status."""

    def __init__(self, message, endpoint=None, status=None):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


def authorization_header(token):
    """Return the ``Authorization`` header value for a NetBox token.

    Accepts a v1 token (40 characters, sent as ``Token <t>``), a v2 token ``nbt_<key>.<secret>``
    (sent as ``Bearer <t>``), a value that already carries either prefix, or a mapping
    ``{type: Token|Bearer, value: ...}`` as netbox.netbox accepts it.
    """
    if isinstance(token, dict):
        kind = str(token.get("type", "")).strip()
        value = str(token.get("value", "")).strip()
        if kind not in ("Token", "Bearer") or not value:
            raise NetBoxError("token: a mapping needs type (Token or Bearer) and a non-empty value")
        return f"{kind} {value}"
    token = str(token or "").strip()
    if not token:
        raise NetBoxError("no NetBox token: set the token option or NETBOX_TOKEN")
    if token.startswith(("Token ", "Bearer ")):
        return token
    if token.startswith(V2_PREFIX) and "." in token[len(V2_PREFIX):]:
        return f"Bearer {token}"
    return f"Token {token}"


@dataclass
class EndpointStats:
    requests: int = 0
    retries: int = 0
    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    wall: float = 0.0


@dataclass
class NetBoxClient:
    """Thread-safe reader/writer for one NetBox instance."""

    url: str
    token: object
    validate_certs: bool = True
    timeout: float = 30.0
    retries: int = 3
    max_workers: int = 4
    page_size: int = 1000
    user_agent: str = "locus.infra"
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        if not HAS_REQUESTS:
            raise NetBoxError(f"the requests Python library is required: {REQUESTS_IMPORT_ERROR}")
        if not self.url or not str(self.url).startswith(("http://", "https://")):
            raise NetBoxError(f"url: {self.url!r} is not an http(s) URL (set the url option or NETBOX_API)")
        self.url = str(self.url).rstrip("/")
        if self.url.endswith("/api"):
            self.url = self.url[: -len("/api")]
        if self.max_workers < 1 or self.page_size < 1:
            raise NetBoxError("max_workers and page_size must be positive")
        self._auth = authorization_header(self.token)
        # one session (keep-alive) with a connection pool sized for our workers
        self.session = session = requests.Session()
        session.verify = self.validate_certs
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(self.max_workers, 4) * 2)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Authorization": self._auth, "Accept": "application/json",
                                "User-Agent": self.user_agent})
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ low level

    def _stat(self, endpoint):
        with self._lock:
            return self.stats.setdefault(endpoint, EndpointStats())

    def request(self, method, endpoint, params=None, payload=None):
        """One API call with retries; returns the decoded JSON body (or None for 204).

        GET/HEAD are retried on connection errors, 429 and 5xx. Writes are retried only when the
        request cannot have been processed: connection refused/failed to connect, 429 and 503.
        """
        idempotent = method.upper() in ("GET", "HEAD", "OPTIONS")
        url = f"{self.url}/api/{endpoint.strip('/')}/"
        st = self._stat(endpoint)
        attempts = 0

        def once():
            nonlocal attempts
            attempts += 1
            t0 = time.monotonic()
            resp = None
            try:
                resp = self.session.request(
                    method, url, params=params, timeout=self.timeout,
                    data=None if payload is None else json.dumps(payload),
                    headers=None if payload is None else {"Content-Type": "application/json"})
            except requests.exceptions.SSLError as exc:
                raise NetBoxError(f"TLS error talking to NetBox at {self.url} ({endpoint}): {exc} "
                                  "(validate_certs / REQUESTS_CA_BUNDLE)", endpoint) from None
            except requests.exceptions.RequestException as exc:
                if not idempotent and (isinstance(exc, requests.exceptions.ReadTimeout)
                                       or not isinstance(exc, requests.exceptions.ConnectionError)):
                    raise NetBoxError(f"NetBox at {self.url} ({endpoint}): {method} {exc.__class__.__name__}: {exc}; "
                                      "the request may or may not have been processed", endpoint) from None
                raise _Retryable(exc, None) from None
            finally:
                with self._lock:
                    st.requests += 1
                    st.seconds += time.monotonic() - t0
                    if resp is not None:
                        st.bytes += len(resp.content)
            if resp.status_code in (RETRYABLE_STATUS if idempotent else (429, 503)):
                raise _Retryable(None, resp)
            return resp

        def counted(_exc, _attempt, _delay):
            with self._lock:
                st.retries += 1

        try:
            resp = retry(once, retries=self.retries, retryable=lambda exc: isinstance(exc, _Retryable),
                         hint=lambda exc: exc.retry_after(), max_hint=30.0, on_retry=counted)
        except _Retryable as exc:
            if exc.resp is None:
                raise NetBoxError(f"cannot reach NetBox at {self.url} ({endpoint}) after {attempts} attempt(s): "
                                  f"{exc.error.__class__.__name__}: {exc.error}", endpoint) from None
            resp = exc.resp  # the last answer, decoded into its error below
        return self._decode(resp, endpoint, attempts - 1)

    def _decode(self, resp, endpoint, attempt):
        status = resp.status_code
        if 200 <= status < 300:
            if status == 204 or not resp.content:
                return None
            try:
                return json.loads(resp.content)
            except ValueError:
                raise NetBoxError(f"NetBox at {self.url} returned a non-JSON body for {endpoint} "
                                  f"(HTTP {status}, {resp.headers.get('Content-Type')!r}); is this the NetBox URL?",
                                  endpoint, status) from None
        detail = _detail(resp)
        if status in (401, 403):
            raise NetBoxError(f"NetBox at {self.url} denied access to {endpoint} (HTTP {status}: {detail}); "
                              "check the token and that its user may view this endpoint", endpoint, status)
        if status == 404:
            raise NetBoxError(f"NetBox at {self.url} has no endpoint {endpoint} (HTTP 404: {detail})", endpoint, status)
        tries = f" after {attempt + 1} attempt(s)" if status in RETRYABLE_STATUS else ""
        raise NetBoxError(f"NetBox at {self.url} failed on {endpoint} with HTTP {status}{tries}: {detail}",
                          endpoint, status)

    # ------------------------------------------------------------------ bulk reads

    def count(self, endpoint, params=None):
        """Number of objects a list endpoint holds for ``params`` (one cheap request: one id)."""
        body = self.request("GET", endpoint, dict(params or {}, limit=1, offset=0, fields="id", ordering="id"))
        return _require_list_body(body, endpoint)["count"]

    def first_page(self, endpoint, params=None):
        """``(count, objects)`` of the first page (``page_size`` objects by id) of a list endpoint."""
        t0 = time.monotonic()
        query = dict(params or {}, limit=self.page_size, offset=0, ordering="id")
        body = _require_list_body(self.request("GET", endpoint, query), endpoint)
        st = self._stat(endpoint)
        with self._lock:
            st.objects += len(body["results"])
            st.wall += time.monotonic() - t0
        return body["count"], body["results"]

    def counts(self, endpoints, pool):
        """``{name: (endpoint, params)}`` -> ``{name: count or the NetBoxError it raised}``, all in parallel."""
        def one(spec):
            try:
                return self.count(*spec)
            except NetBoxError as exc:
                return exc

        return dict(zip(endpoints, pool.map(one, endpoints.values()), strict=True))

    def list_all(self, endpoints, counts=None, pool=None):
        """Fetch every object of several list endpoints concurrently.

        ``endpoints``: mapping name -> (endpoint path, query params incl. ``fields``); ``counts``:
        name -> count already known from :meth:`counts` (the others are probed first, in parallel).
        Returns name -> list of objects (in page order: ascending id). All pages of all endpoints run
        on one bounded pool, queued in the order of ``endpoints`` (put the costly lists first), in
        pages that keep every worker busy (never below 100 objects); a page cut short by the
        server's ``MAX_PAGE_SIZE`` is continued by another request. A result whose ids do not match
        the count (objects created/deleted while paging) is fetched again once, then fails: never a
        partial list.
        """
        own_pool = pool is None
        pool = pool or ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="netbox")
        try:
            result = {}
            pending = dict(endpoints)
            known = {name: n for name, n in (counts or {}).items() if name in pending}
            for attempt in range(2):
                t0 = time.monotonic()
                missing = {name: spec for name, spec in pending.items() if name not in known}
                for name, value in self.counts(missing, pool).items():
                    if isinstance(value, NetBoxError):
                        raise value
                    known[name] = value
                lists = self._fetch_pages({name: (path, params, known[name]) for name, (path, params)
                                           in pending.items()}, pool)
                retry = {}
                for name, (path, _params) in pending.items():
                    objs, count = lists[name], known[name]
                    ids = {o.get("id") for o in objs}
                    st = self._stat(path)
                    with self._lock:
                        st.objects += len(objs)
                        st.wall += time.monotonic() - t0
                    if len(ids) != count or len(objs) != count:
                        if attempt == 0:
                            retry[name] = pending[name]
                            del known[name]
                            continue
                        raise NetBoxError(f"NetBox at {self.url}: {path} changed while it was read "
                                          f"(count {count}, got {len(objs)} objects / {len(ids)} ids); "
                                          "try again", path)
                    result[name] = objs
                if not retry:
                    return result
                pending = retry
            return result
        finally:
            if own_pool:
                pool.shutdown(wait=True, cancel_futures=True)

    def _fetch_pages(self, lists, pool):
        """``{name: (path, params, count)}`` -> ``{name: [objects in page order]}``, pages in parallel."""
        total = sum(count for _path, _params, count in lists.values())
        # Spread the objects over the workers, but not in pages below 100 (each request has a fixed cost).
        size = max(1, min(self.page_size, max(100, math.ceil(total / self.max_workers))))
        pages = {name: {} for name in lists}
        running = {}

        def submit(name, offset, limit):
            path, params, _count = lists[name]
            future = pool.submit(self.request, "GET", path, dict(params, limit=limit, offset=offset, ordering="id"))
            running[future] = (name, offset, limit)

        for name in lists:
            for offset in range(0, lists[name][2], size):
                submit(name, offset, size)
        try:
            while running:
                done = wait(running, return_when=FIRST_COMPLETED).done
                for future in done:
                    name, offset, limit = running.pop(future)
                    results = _require_list_body(future.result(), lists[name][0])["results"]
                    pages[name][offset] = results
                    expected = min(limit, lists[name][2] - offset)
                    if 0 < len(results) < expected:
                        # NetBox caps ``limit`` at its MAX_PAGE_SIZE without saying so: read on from here.
                        submit(name, offset + len(results), limit - len(results))
        finally:
            for future in running:
                future.cancel()
        return {name: [obj for offset in sorted(by_offset) for obj in by_offset[offset]]
                for name, by_offset in pages.items()}

    def stats_lines(self):
        lines = []
        for endpoint, st in sorted(self.stats.items()):
            lines.append(f"{endpoint}: {st.requests} requests ({st.retries} retries), {st.objects} objects, "
                         f"{st.bytes / 1024:.0f} KiB, {st.seconds:.2f} s in requests, {st.wall:.2f} s wall")
        return lines


def _detail(resp):
    try:
        body = json.loads(resp.content)
    except ValueError:
        text = resp.text.strip().replace("\n", " ")
        return text[:200] or resp.reason
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:300]


def _require_list_body(body, endpoint):
    if not isinstance(body, dict) or not isinstance(body.get("results"), list) or "count" not in body:
        raise NetBoxError(f"{endpoint}: expected a paginated list (count/results), got {str(body)[:200]}", endpoint)
    return body
