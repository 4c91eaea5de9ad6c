"""The publish routes as the OpenAPI schema describes them."""

from __future__ import annotations

from notifier.app import App
from tests.api.conftest import asgi_client


async def test_the_openapi_schema_describes_the_publish_routes(app: App) -> None:
    """Request bodies, the Idempotency-Key header and its rule, 200 and 201 answers."""
    async with asgi_client(app) as http:
        schema = (await http.get("/openapi.json")).json()
    single = schema["paths"]["/v1/notifications"]["post"]
    batch = schema["paths"]["/v1/notifications/batch"]["post"]
    for operation in (single, batch):
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["additionalProperties"] is False
        assert "201" in operation["responses"]
    assert {"user_id", "type", "data"} <= set(
        single["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )
    assert (
        "notifications"
        in batch["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )
    [key] = single["parameters"]
    assert (key["name"], key["in"], key["required"]) == ("Idempotency-Key", "header", False)
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}
    assert "200" in single["responses"]
    assert "parameters" not in batch
