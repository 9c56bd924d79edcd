"""/docs works without the internet: the page and every asset it loads come from the writer itself."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

ASSET_TYPES = {"script": "text/javascript", "stylesheet": "text/css", "icon": "image/png"}


class AssetLinks(HTMLParser):
    """The URLs a browser would fetch to show the page: scripts, stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and values.get("src"):
            self.found.append(("script", values["src"]))
        if tag == "link" and values.get("href"):
            rel = values.get("rel", "")
            self.found.append(("stylesheet" if rel == "stylesheet" else "icon", values["href"]))


async def test_docs_page_loads_every_asset_from_the_writer(api: httpx.AsyncClient) -> None:
    # GIVEN the writer WHEN /docs is fetched
    page = await api.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    links = AssetLinks()
    links.feed(page.text)
    # THEN it names a script, a stylesheet and an icon, all on the writer itself (no CDN) ...
    assert {kind for kind, _ in links.found} == {"script", "stylesheet", "icon"}
    assert "//" not in page.text.replace("<!DOCTYPE html>", "")  # no absolute URL anywhere in the page
    assert "url: '/openapi.json'" in page.text
    # ... and each of them is served by the writer, with its type
    for kind, url in links.found:
        assert url.startswith("/docs/assets/"), url
        asset = await api.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(ASSET_TYPES[kind]), url
        assert len(asset.content) > 500, url
    script = next(url for kind, url in links.found if kind == "script")
    assert "SwaggerUIBundle" in (await api.get(script)).text
    assert (await api.get("/openapi.json")).json()["openapi"].startswith("3.1")


async def test_only_the_docs_assets_are_served(api: httpx.AsyncClient) -> None:
    for url in ("/docs/assets/index.html", "/docs/assets/..%2f..%2f__init__.py", "/docs/assets/", "/redoc"):
        response = await api.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "application/problem+json", url
