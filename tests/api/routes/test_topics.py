"""The topic routes' path parameter."""

from __future__ import annotations

import httpx

from tests.support import API_KEY


async def test_a_topic_name_with_a_newline_is_refused_as_a_bad_name(
    client: httpx.AsyncClient,
) -> None:
    """A topic name that holds a newline reaches the topic routes and is refused like
    any bad name (422), rather than matching no route (404): the fuzz tests found it."""
    headers = {"authorization": f"Bearer {API_KEY}"}
    for method, path, body in [
        ("GET", "/v1/topics/a%0Ab/subscribers", None),
        ("POST", "/v1/topics/a%0Ab/subscribers", {"add": ["u"]}),
        ("POST", "/v1/topics/a%0Ab/notifications", {"type": "t", "data": {}}),
    ]:
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == 422, (method, path, response.text)
