"""The API's documentation: the OpenAPI document, with errors as ``application/problem+json``, and
`/docs` without the internet, Swagger UI's page and its assets all served by the writer itself.

FastAPI's own `/docs` loads Swagger UI from a CDN, so on a private network (where the writer
belongs) it is a blank page. The assets come from the `swagger-ui-bundle-v2` package instead: the
same files as npm's `swagger-ui-dist` of that version (5.x, which renders OpenAPI 3.1).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from conveyor import asyncapi
from conveyor.contracts import App
from conveyor.settings import WriterSettings
from conveyor.writer.api.problems import PROBLEM_JSON
from conveyor.writer.http.typed_docs import add_message_types

DOCS_URL = "/docs"
ASYNCAPI_URL = "/asyncapi.json"
ASSETS_URL = "/docs/assets"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
CACHE = {"Cache-Control": "public, max-age=86400"}


def openapi_with_problems(app: FastAPI, contracts: App | None = None) -> dict[str, Any]:
    """FastAPI documents every model as application/json; errors are application/problem+json.
    With the user's app, the message types' schemas and the request bodies as their union."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if int(status) >= 400 and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
        if contracts is not None:
            add_message_types(schema, contracts)
        app.openapi_schema = schema
    return app.openapi_schema


def swagger_ui_dir() -> Path:
    """The packaged Swagger UI distribution (`swagger_ui_bundle/vendor/swagger-ui-<version>`)."""
    vendor = Path(str(resources.files("swagger_ui_bundle") / "vendor"))
    found = sorted(path for path in vendor.glob("swagger-ui-*") if (path / "swagger-ui-bundle.js").is_file())
    if not found:
        raise RuntimeError(f"no Swagger UI distribution under {vendor}")
    return found[-1]


def add_docs(app: FastAPI) -> None:
    """Serve `/docs` from packaged assets (the app is made with ``docs_url=None, redoc_url=None``)."""
    assets = swagger_ui_dir()

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "Not Found")
        return FileResponse(assets / name, media_type=media_type, headers=CACHE)


def add_asyncapi(app: FastAPI, settings: WriterSettings, contracts: App | None) -> None:
    """``/asyncapi.json``: the queue's AsyncAPI document (the same as `conveyor asyncapi` prints)."""
    document = asyncapi.document(contracts, settings.queue_name)

    @app.get(ASYNCAPI_URL, include_in_schema=False)
    async def asyncapi_document() -> JSONResponse:
        return JSONResponse(document)
