"""`/docs` without the internet: Swagger UI's page and its assets, all served by the writer itself.

FastAPI's own `/docs` loads Swagger UI from a CDN, so on a private network (where the writer
belongs) it is a blank page. The assets come from the `swagger-ui-bundle-v2` package instead: the
same files as npm's `swagger-ui-dist` of that version (5.x, which renders OpenAPI 3.1).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
CACHE = {"Cache-Control": "public, max-age=86400"}


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
