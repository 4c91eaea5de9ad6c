"""Publishing from a backend: `Publisher` (blocking) and `AsyncPublisher` (asyncio).

A publish is retried when the answer may not have been the service's last word: the
connection failed or timed out, or the service (or a proxy in front of it) answered 502,
503 or 504, waiting what `Retry-After` says or else a jittered exponential backoff. One
`Idempotency-Key` is made per logical publish (unless the caller gives one) and sent
with every attempt, so a retry of a publish whose answer was lost returns the original
notification instead of storing a second one. Any other 4xx is final at once: sending
the same request again would get the same answer (a 429 included: it is raised with its
`retry_after`, for the caller to decide).

Batches are cut into requests of 1,000 items (the service's limit); each item without an
`idempotency_key` gets one, written into the item, so retrying a batch is safe too.

Topics, presence and revocation have a method each, through `request`, which applies
the same retries to any route. A topic publish gets its `Idempotency-Key` like a direct
one; subscriber changes and presence questions over 1,000 ids are cut into requests of
1,000 (the service's limit), and subscriber pages are followed to the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from notifier.client.backoff import Backoff, retry_after
from notifier.client.errors import ApiError, BatchError, NotifierError, Unreachable

BATCH_LIMIT = 1000
RETRY_STATUSES = frozenset({502, 503, 504})
Json = dict[str, Any]


class _Base:
    def __init__(self, url: str, api_key: str, *, retries: int, backoff: Backoff | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.retries = retries
        self.backoff = backoff or Backoff(base=0.2, cap=10.0)

    def _wait(self, attempt: int, outcome: httpx.Response | Exception) -> float | None:
        """Seconds to wait before retrying after `outcome`, or None: it is final."""
        if attempt >= self.retries:
            return None
        if isinstance(outcome, httpx.TransportError):
            return self.backoff.delay(attempt)
        if isinstance(outcome, httpx.Response) and outcome.status_code in RETRY_STATUSES:
            told = retry_after(outcome.headers.get("retry-after"))
            return told if told is not None else self.backoff.delay(attempt)
        return None

    def _result(self, outcome: httpx.Response | Exception) -> httpx.Response:
        if isinstance(outcome, Exception):
            raise Unreachable(f"{self.url}: {outcome!r}") from outcome
        if outcome.status_code >= 400:
            try:
                detail = outcome.json().get("detail", outcome.text)
            except (ValueError, AttributeError):
                detail = outcome.text
            raise ApiError(
                outcome.status_code, detail, retry_after(outcome.headers.get("retry-after"))
            )
        return outcome

    def _headers_for(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {**self._headers, **(extra or {})}


def single(
    user_id: str, type: str, data: Mapping[str, Any] | None, key: str | None
) -> tuple[Json, dict[str, str]]:
    """The body and headers of one publish; the key is made here when not given."""
    body = {"user_id": user_id, "type": type, "data": dict(data or {})}
    return body, {"Idempotency-Key": key or str(uuid.uuid4())}


def topic_publish(
    topic: str, type: str, data: Mapping[str, Any] | None, key: str | None
) -> tuple[str, Json, dict[str, str]]:
    """The path, body and headers of a topic publish; the key is made here when not given."""
    body = {"type": type, "data": dict(data or {})}
    return (
        f"/v1/topics/{quote(topic, safe='')}/notifications",
        body,
        {"Idempotency-Key": key or str(uuid.uuid4())},
    )


def subscriber_changes(add: Sequence[str], remove: Sequence[str]) -> Iterator[Json]:
    """Bodies of at most 1,000 ids a list, the additions first."""
    for start in range(0, len(add), BATCH_LIMIT):
        yield {"add": list(add[start : start + BATCH_LIMIT]), "remove": []}
    for start in range(0, len(remove), BATCH_LIMIT):
        yield {"add": [], "remove": list(remove[start : start + BATCH_LIMIT])}


def id_chunks(user_ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(user_ids), BATCH_LIMIT):
        yield list(user_ids[start : start + BATCH_LIMIT])


def user_path(user_id: str, what: str) -> str:
    return f"/v1/users/{quote(user_id, safe='')}/{what}"


def topic_path(topic: str) -> str:
    return f"/v1/topics/{quote(topic, safe='')}/subscribers"


def chunks(items: Iterable[MutableMapping[str, Any]]) -> Iterator[list[MutableMapping[str, Any]]]:
    """Batch items in requests of at most 1,000, each item given an idempotency key."""
    chunk: list[MutableMapping[str, Any]] = []
    for item in items:
        if not item.get("idempotency_key"):
            item["idempotency_key"] = str(uuid.uuid4())
        item.setdefault("data", {})
        chunk.append(item)
        if len(chunk) == BATCH_LIMIT:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Publisher(_Base):
    """Publishes over one keep-alive HTTP connection pool (`httpx.Client`).

    >>> with Publisher("http://127.0.0.1:8000", api_key) as notifier:
    ...     notifier.publish("alice", "comment.created", {"text": "Hi!"})
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        retries: int = 5,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, api_key, retries=retries, backoff=backoff)
        self._own = client is None
        self._client = client or httpx.Client(timeout=timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Any publisher route, with the retries above; raises `ApiError` on an error
        status and `Unreachable` when every attempt failed to connect."""
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = self._client.request(
                    method,
                    self.url + path,
                    json=json,
                    params=params,
                    headers=self._headers_for(headers),
                )
            except httpx.TransportError as error:
                outcome = error
            wait = self._wait(attempt, outcome)
            if wait is None:
                return self._result(outcome)
            time.sleep(wait)
            attempt += 1

    def publish(
        self,
        user_id: str,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Json:
        """One notification; the Notification object (the original on a repeat)."""
        body, headers = single(user_id, type, data, idempotency_key)
        result: Json = self.request("POST", "/v1/notifications", json=body, headers=headers).json()
        return result

    def publish_batch(self, items: Iterable[MutableMapping[str, Any]]) -> list[Json]:
        """Items `{"user_id", "type", "data", "idempotency_key"?}`; the Notifications in
        item order. Each chunk of 1,000 is all or nothing; a failure after the first
        raises `BatchError` with what was stored before it."""
        published: list[Json] = []
        for chunk in chunks(items):
            try:
                response = self.request(
                    "POST", "/v1/notifications/batch", json={"notifications": chunk}
                )
            except NotifierError as error:
                if not published:
                    raise
                raise BatchError(published, error) from error
            published.extend(response.json()["notifications"])
        return published

    def publish_topic(
        self,
        topic: str,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Json:
        """One notification to every subscriber of `topic`: `{"topic", "type",
        "recipients"}` (the original answer on a repeat)."""
        path, body, headers = topic_publish(topic, type, data, idempotency_key)
        result: Json = self.request("POST", path, json=body, headers=headers).json()
        return result

    def subscribe(
        self, topic: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> tuple[int, int]:
        """Subscribe `add` to `topic` and unsubscribe `remove` (an id in both: `ApiError`
        422 from the service when they share a request); (added, removed). Repeating a
        call is harmless: it changes nothing and counts zeros."""
        added = removed = 0
        for body in subscriber_changes(add, remove):
            answer = self.request("POST", topic_path(topic), json=body).json()
            added, removed = added + answer["added"], removed + answer["removed"]
        return added, removed

    def subscribers(self, topic: str, *, page: int = 1000) -> Iterator[str]:
        """Every subscriber of `topic`, in byte order, a page at a time."""
        after: str | None = None
        while True:
            params = {"limit": page, **({"after": after} if after is not None else {})}
            user_ids: list[str] = self.request("GET", topic_path(topic), params=params).json()[
                "user_ids"
            ]
            yield from user_ids
            if len(user_ids) < page:
                return
            after = user_ids[-1]

    def presence(self, user_ids: Sequence[str]) -> dict[str, Json]:
        """`{user_id: {"online", "connections"}}` for every id asked."""
        found: dict[str, Json] = {}
        for chunk in id_chunks(user_ids):
            found.update(
                self.request("POST", "/v1/presence", json={"user_ids": chunk}).json()["presence"]
            )
        return found

    def revoke(self, user_id: str) -> Json:
        """Log `user_id` out everywhere: `{"user_id", "revoked_at"}`."""
        result: Json = self.request("POST", user_path(user_id, "revoke"), json={}).json()
        return result


class AsyncPublisher(_Base):
    """`Publisher` for asyncio (`httpx.AsyncClient`).

    >>> async with AsyncPublisher("http://127.0.0.1:8000", api_key) as notifier:
    ...     await notifier.publish("alice", "comment.created", {"text": "Hi!"})
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        retries: int = 5,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, api_key, retries=retries, backoff=backoff)
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """As `Publisher.request`."""
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = await self._client.request(
                    method,
                    self.url + path,
                    json=json,
                    params=params,
                    headers=self._headers_for(headers),
                )
            except httpx.TransportError as error:
                outcome = error
            wait = self._wait(attempt, outcome)
            if wait is None:
                return self._result(outcome)
            await asyncio.sleep(wait)
            attempt += 1

    async def publish(
        self,
        user_id: str,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Json:
        """As `Publisher.publish`."""
        body, headers = single(user_id, type, data, idempotency_key)
        response = await self.request("POST", "/v1/notifications", json=body, headers=headers)
        result: Json = response.json()
        return result

    async def publish_batch(self, items: Iterable[MutableMapping[str, Any]]) -> list[Json]:
        """As `Publisher.publish_batch`."""
        published: list[Json] = []
        for chunk in chunks(items):
            try:
                response = await self.request(
                    "POST", "/v1/notifications/batch", json={"notifications": chunk}
                )
            except NotifierError as error:
                if not published:
                    raise
                raise BatchError(published, error) from error
            published.extend(response.json()["notifications"])
        return published

    async def publish_topic(
        self,
        topic: str,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Json:
        """As `Publisher.publish_topic`."""
        path, body, headers = topic_publish(topic, type, data, idempotency_key)
        result: Json = (await self.request("POST", path, json=body, headers=headers)).json()
        return result

    async def subscribe(
        self, topic: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> tuple[int, int]:
        """As `Publisher.subscribe`."""
        added = removed = 0
        for body in subscriber_changes(add, remove):
            answer = (await self.request("POST", topic_path(topic), json=body)).json()
            added, removed = added + answer["added"], removed + answer["removed"]
        return added, removed

    async def subscribers(self, topic: str, *, page: int = 1000) -> list[str]:
        """As `Publisher.subscribers`, all of them in one list."""
        found: list[str] = []
        while True:
            params = {"limit": page, **({"after": found[-1]} if found else {})}
            response = await self.request("GET", topic_path(topic), params=params)
            user_ids: list[str] = response.json()["user_ids"]
            found.extend(user_ids)
            if len(user_ids) < page:
                return found

    async def presence(self, user_ids: Sequence[str]) -> dict[str, Json]:
        """As `Publisher.presence`."""
        found: dict[str, Json] = {}
        for chunk in id_chunks(user_ids):
            response = await self.request("POST", "/v1/presence", json={"user_ids": chunk})
            found.update(response.json()["presence"])
        return found

    async def revoke(self, user_id: str) -> Json:
        """As `Publisher.revoke`."""
        result: Json = (await self.request("POST", user_path(user_id, "revoke"), json={})).json()
        return result
