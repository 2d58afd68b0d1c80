"""The page at /: upload an image (or a sound, or type a text) and see the predictions."""

from __future__ import annotations

import html

from .spec import PROMPT, TEXT

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ptcli serve: {title}</title>
<style>
 body {{ font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }}
 #top-label {{ font-size: 1.6rem; font-weight: 600; min-height: 2rem; }}
 #error {{ color: #b00020; }} textarea {{ width: 100%; }} li {{ margin: .2rem 0; }}
</style></head>
<body>
<h1>{title}</h1>
<form id="form">{field}<button type="submit" id="send">Predict</button></form>
<p id="top-label"></p><ol id="predictions"></ol><p id="error"></p><img id="picture" alt="the result" hidden style="max-width:100%">
<script>
const form = document.getElementById("form");
async function predict(event) {{
  if (event) event.preventDefault();
  const body = new FormData(form);
  document.getElementById("error").textContent = "";
  const response = await fetch("predict", {{ method: "POST", body }});
  const result = await response.json();
  if (!response.ok) {{ document.getElementById("error").textContent = result.error; return; }}
  const first = Array.isArray(result) ? result[0] : result;
  const picture = document.getElementById("picture");
  picture.hidden = !first.png;
  if (first.png) picture.src = "data:image/png;base64," + first.png;
  if (first.generations) {{ document.getElementById("top-label").textContent = first.prompt + first.generations[0]; return; }}
  const rows = first.predictions || (first.detections || []).map(d => ({{label: d.label, score: d.score}}));
  document.getElementById("top-label").textContent = rows.length ? rows[0].label : "nothing found";
  document.getElementById("predictions").replaceChildren(...rows.map(row => {{
    const item = document.createElement("li");
    item.textContent = `${{row.label}}  ${{(row.score * 100).toFixed(1)}}%`;
    return item;
  }}));
}}
form.addEventListener("submit", predict);
const file = document.getElementById("file");
if (file) file.addEventListener("change", () => predict());
</script>
</body></html>
"""


def page(kind: str, title: str) -> str:
    if kind in (TEXT, PROMPT):
        field = f'<textarea id="{kind}" name="{kind}" rows="4" placeholder="Type a {kind}"></textarea><br>'
    else:
        field = f'<input type="file" id="file" name="file" accept="{kind}/*"> '
    return _PAGE.format(title=html.escape(title), field=field)
