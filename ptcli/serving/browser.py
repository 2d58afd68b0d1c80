"""What a browser gets beside the API: Swagger UI at /docs from Swagger UI's own files (those
the fastapi-offline wheel ships), so that it works offline, and the key form that /docs and the page at
/ share. Both pages open without a key; on a server with keys they ask for one, keep it in the
tab's sessionStorage and send it as ``Authorization: Bearer KEY`` on every request they make
(the routes stay protected; the pages hold nothing but code)."""

from __future__ import annotations

import json

#: Where Swagger UI's files are served; open, as the pages are (they are the same for everyone).
ASSETS = "/docs/assets"

#: The key form and the helpers both pages use: ptcliKeyed(start) runs start() once a key is
#: known (at once on a server without keys); withKey(headers) adds it; refused() forgets it.
KEY_SCRIPT = """
const PTCLI_KEYED = __KEYED__, PTCLI_KEY = "ptcli-api-key";
function withKey(headers) {
  const key = sessionStorage.getItem(PTCLI_KEY);
  if (PTCLI_KEYED && key) headers["Authorization"] = "Bearer " + key;
  return headers;
}
function askKey(start, why) {
  const form = document.createElement("form");
  form.id = "key-form";
  form.innerHTML = '<label>This server wants an API key: <input type="password" id="api-key" autocomplete="off"></label> ' +
                   '<button type="submit" id="use-key">Use it</button> <span id="key-error" style="color:#b00020"></span>';
  document.body.prepend(form);
  form.querySelector("#key-error").textContent = why || "";
  form.addEventListener("submit", event => {
    event.preventDefault();
    const key = form.querySelector("#api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(PTCLI_KEY, key);
    form.remove();
    start();
  });
}
function refused(start) {
  sessionStorage.removeItem(PTCLI_KEY);
  askKey(start, "that key was refused; try another");
}
function ptcliKeyed(start) {
  if (!PTCLI_KEYED || sessionStorage.getItem(PTCLI_KEY)) start(); else askKey(start);
}
"""


def key_script(keyed: bool) -> str:
    return KEY_SCRIPT.replace("__KEYED__", json.dumps(bool(keyed)))


_DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ptcli serve: the API</title>
<link rel="stylesheet" href="__ASSETS__/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<script src="__ASSETS__/swagger-ui-bundle.js"></script>
<script>
__KEY_SCRIPT__
function start() {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    requestInterceptor: request => { withKey(request.headers); return request; },
    responseInterceptor: response => {
      if (PTCLI_KEYED && response.status === 401 && response.url.endsWith("/openapi.json")) refused(start);
      return response;
    },
  });
}
ptcliKeyed(start);
</script>
</body></html>
"""


def docs_page(keyed: bool) -> str:
    return _DOCS.replace("__ASSETS__", ASSETS).replace("__KEY_SCRIPT__", key_script(keyed))


def add_routes(app, keyed: bool) -> None:
    from importlib.resources import files

    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="swagger-ui")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        return HTMLResponse(docs_page(keyed))
