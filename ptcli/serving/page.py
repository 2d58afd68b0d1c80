"""The page at /: pick a model, upload an image or a sound (or type a text or a prompt) and see
its answer drawn as the command would: the top label and predictions, boxes over the uploaded
photo, the image a model answers with (upscaled, heat map, adversarial), or a language model's
text as it streams. Each new request clears the last answer, error included."""

from __future__ import annotations

import json

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ptcli serve</title>
<style>
 body { font: 16px system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
 #top-label { font-size: 1.6rem; font-weight: 600; min-height: 2rem; white-space: pre-wrap; }
 #error { color: #b00020; } textarea { width: 100%; } li { margin: .2rem 0; }
 #stage { position: relative; display: inline-block; max-width: 100%; }
 #upload, #picture { max-width: 100%; display: block; } #boxes { position: absolute; left: 0; top: 0; }
</style></head>
<body>
<h1 id="title"></h1>
<form id="form">
 <select id="model" name="model" aria-label="model"></select>
 <span id="field"></span>
 <button type="submit" id="send">Predict</button>
</form>
<p id="error"></p>
<p id="top-label"></p><ol id="predictions"></ol>
<div id="stage"><img id="upload" alt="the uploaded image" hidden><canvas id="boxes" hidden></canvas></div>
<img id="picture" alt="the result" hidden>
<script>
__KEY_SCRIPT__
// The models: in the page on a server without keys; on one with keys, from /models with the key.
let MODELS = __MODELS__;
const $ = id => document.getElementById(id);
const select = $("model");
function setUp(models) {
  MODELS = models;
  select.replaceChildren();
  for (const [name, info] of Object.entries(MODELS)) {
    const option = document.createElement("option");
    option.value = name; option.textContent = `${name}: ${info.title}`;
    select.append(option);
  }
  select.hidden = Object.keys(MODELS).length < 2;
  showField();
}
async function start() {
  if (MODELS !== null) return setUp(MODELS);
  try {
    const response = await fetch("models", { headers: withKey({}) });
    if (response.status === 401) return refused(start);
    const body = await response.json();
    if (!response.ok) { $("error").textContent = body.error || response.statusText; return; }
    setUp(body);
  } catch (error) { $("error").textContent = String(error); }
}

function current() { return MODELS[select.value]; }
function clear() {
  $("error").textContent = ""; $("top-label").textContent = "";
  $("predictions").replaceChildren(); $("picture").hidden = true; $("picture").removeAttribute("src");
  const canvas = $("boxes"); canvas.hidden = true; canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}
function showField() {
  const kind = current().kind, field = $("field");
  clear(); $("upload").hidden = true;
  $("title").textContent = current().title;
  if (kind === "text" || kind === "prompt") {
    field.innerHTML = `<textarea id="${kind}" name="${kind}" rows="4" placeholder="Type a ${kind}"></textarea><br>`;
  } else {
    field.innerHTML = `<input type="file" id="file" name="file" accept="${kind}/*">`;
    $("file").addEventListener("change", () => { showUpload(); predict(); });
  }
}
function showUpload() {
  const file = $("file") && $("file").files[0], upload = $("upload");
  if (upload.src) URL.revokeObjectURL(upload.src);
  if (file && current().kind === "image") { upload.src = URL.createObjectURL(file); upload.hidden = false; }
  else { upload.hidden = true; upload.removeAttribute("src"); }
}
function drawBoxes(result) {
  const upload = $("upload"), canvas = $("boxes");
  const draw = () => {
    canvas.width = upload.clientWidth; canvas.height = upload.clientHeight; canvas.hidden = false;
    const sx = upload.clientWidth / result.width, sy = upload.clientHeight / result.height, g = canvas.getContext("2d");
    g.lineWidth = 2; g.font = "14px system-ui"; g.strokeStyle = g.fillStyle = "#e6007e";
    for (const d of result.detections) {
      const [x, y, w, h] = d.bbox;
      g.strokeRect(x * sx, y * sy, w * sx, h * sy);
      g.fillText(`${d.label} ${(d.score * 100).toFixed(0)}%`, x * sx + 2, Math.max(12, y * sy - 3));
    }
  };
  if (upload.complete && upload.naturalWidth) draw(); else upload.onload = draw;
}
function show(result) {
  if (result.error) { $("error").textContent = result.error; return; }
  if (result.png) { $("picture").src = "data:image/png;base64," + result.png; $("picture").hidden = false; }
  if (result.generations) { $("top-label").textContent = result.prompt + result.generations[0]; return; }
  if (result.label !== undefined && !result.predictions) {  // explain's class, attack's verdict
    $("top-label").textContent = result.score !== undefined ? `${result.label}  ${(result.score * 100).toFixed(1)}%` : result.label;
  }
  if (result.adversarial) $("top-label").textContent = `${result.clean.label} → ${result.adversarial.label}`;
  if (result.detections) {
    drawBoxes(result);
    $("top-label").textContent = result.detections.length ? `${result.detections.length} found` : "nothing found";
  }
  const rows = result.predictions || (result.detections || []).map(d => ({label: d.label, score: d.score}));
  if (result.predictions) $("top-label").textContent = rows.length ? rows[0].label : "nothing found";
  $("predictions").replaceChildren(...rows.map(row => {
    const item = document.createElement("li");
    item.textContent = `${row.label}  ${(row.score * 100).toFixed(1)}%`;
    return item;
  }));
}
// Each request takes a ticket; an answer that comes back after a newer request began is
// dropped, so a slow old answer never lands over the newer one (or its error).
let latest = 0;
async function stream(response, prompt, ticket) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "", text = prompt;
  $("top-label").textContent = text;
  for (;;) {
    const { value, done } = await reader.read();
    if (done || ticket !== latest) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const line = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const event = JSON.parse(line.slice(6));
      if (event.text !== undefined) { text += event.text; $("top-label").textContent = text; }
      if (event.error) $("error").textContent = event.error;
    }
  }
}
async function predict(event) {
  if (event) event.preventDefault();
  const ticket = ++latest;
  clear();
  const info = current(), url = "predict/" + encodeURIComponent(select.value);
  let response;
  try {
    if (info.kind === "prompt") {
      const prompt = $("prompt").value;
      response = await fetch(url, { method: "POST", headers: withKey({ "Content-Type": "application/json" }),
                                    body: JSON.stringify({ prompt, stream: true }) });
      if (response.ok) return await stream(response, prompt, ticket);
    } else {
      response = await fetch(url, { method: "POST", headers: withKey({}), body: new FormData($("form")) });
    }
    if (response.status === 401) return refused(() => {});
    const result = await response.json();
    if (ticket !== latest) return;
    show(Array.isArray(result) ? result[0] : result);
  } catch (error) { if (ticket === latest) $("error").textContent = String(error); }
}
select.addEventListener("change", showField);
$("form").addEventListener("submit", predict);
ptcliKeyed(start);
</script>
</body></html>
"""


def described(models: dict) -> dict:
    """name -> {kind, title} of each loaded model (its ModelInfo), as the page and /models give it."""
    return {name: {"kind": info.kind, "title": info.title} for name, info in models.items()}


def page(models: dict | None, keyed: bool = False) -> str:
    """The page over ``models`` (name -> ModelInfo); None on a server with keys, where the page
    asks for a key and reads them from /models with it."""
    from .browser import key_script

    listed = "null" if models is None else json.dumps(described(models))
    # In a <script>, "</" would end it: escape it inside the JSON.
    return _PAGE.replace("__KEY_SCRIPT__", key_script(keyed)).replace("__MODELS__", listed.replace("</", "<\\/"))
