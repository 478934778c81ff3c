"""The students' page: choose the assignment, upload the notebook, watch it
being graded, read the feedback page (shown in a sandboxed frame).

Plain HTML, CSS and a small script, served by the app; every URL is
relative, so the page works behind a reverse proxy under any path.  The
script and the style are files of their own so that the Content-Security-Policy
needs no ``unsafe-inline``.  ``<body data-state>`` says where the page is
(``idle``, ``uploading``, ``queued``, ``running``, ``done``, ``error``), for
people's style sheets and for the browser test.
"""

from __future__ import annotations

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-src 'self'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Submit your notebook</title>
<link rel="stylesheet" href="static/page.css">
<link rel="icon" href="data:,">
</head>
<body data-state="idle">
<main>
<h1>Submit your notebook</h1>
<form id="upload">
  <label for="assignment">Assignment</label>
  <select id="assignment" name="assignment" required></select>
  <label for="notebook">Your notebook (.ipynb)</label>
  <input id="notebook" name="notebook" type="file" accept=".ipynb" required>
  <label for="token" id="token-label" hidden>Access token (from your course)</label>
  <input id="token" type="password" autocomplete="off" hidden>
  <button id="send" type="submit">Submit</button>
</form>
<section id="progress" aria-live="polite" hidden>
  <p id="status"></p>
  <p><a id="feedback-link" target="_blank" rel="noopener noreferrer" hidden>Open the feedback in its own tab</a></p>
</section>
<iframe id="feedback" title="Feedback on your notebook" sandbox hidden></iframe>
</main>
<script src="static/page.js"></script>
</body>
</html>
"""

PAGE_CSS = """body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;color:#1d232b;
background:#f4f6f8;margin:0}
main{max-width:1180px;margin:0 auto;padding:24px}
form{display:grid;grid-template-columns:max-content 1fr;gap:10px 16px;align-items:center;background:#fff;
border:1px solid #dde2e8;border-radius:8px;padding:16px 20px;max-width:640px}
button{grid-column:2;justify-self:start;font:inherit;padding:6px 18px;border-radius:6px;border:1px solid #2f5f93;
background:#3b6ea8;color:#fff;cursor:pointer}
button:disabled{opacity:.6;cursor:wait}
#progress{margin:16px 0}
#status{font-size:1.1em;font-weight:600}
#status.full{color:#1d7a3e}#status.partial{color:#b26b00}#status.error{color:#b3261e}
iframe{width:100%;height:80vh;border:1px solid #dde2e8;border-radius:8px;background:#fff}
"""

PAGE_JS = r""""use strict";
const $ = (id) => document.getElementById(id);
const setState = (s) => { document.body.dataset.state = s; };

function headers() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function show(text, kind) {
  $("progress").hidden = false;
  $("status").textContent = text;
  $("status").className = kind || "";
}

function fail(text) {
  setState("error");
  show("Not graded: " + text, "error");
}

async function readJson(response) {
  try { return await response.json(); } catch (e) { return {}; }
}

async function loadAssignments() {
  const response = await fetch("assignments", { headers: headers() });
  const body = await readJson(response);
  const needsToken = body.auth === "token";
  $("token").hidden = $("token-label").hidden = !needsToken;
  const select = $("assignment");
  select.replaceChildren();
  for (const a of body.assignments || []) {
    const option = document.createElement("option");
    option.value = a.name;
    option.textContent = a.title + (a.open ? "" : " (closed)");
    option.disabled = !a.open;
    select.append(option);
  }
  const first = (body.assignments || []).find((a) => a.open);
  if (first) select.value = first.name;
  select.dataset.loaded = "true";
}

async function upload(event) {
  event.preventDefault();
  const file = $("notebook").files[0];
  if (!file) return;
  const data = new FormData();
  data.append("notebook", file, file.name);
  $("send").disabled = true;
  $("feedback").hidden = true;
  $("feedback-link").hidden = true;
  setState("uploading");
  show("Uploading " + file.name + "...");
  try {
    const url = "assignments/" + encodeURIComponent($("assignment").value) + "/submissions";
    const response = await fetch(url, { method: "POST", body: data, headers: headers() });
    const body = await readJson(response);
    if (response.status !== 202) {
      const wait = response.headers.get("Retry-After");
      fail((body.detail || "the server answered " + response.status) + (wait ? " (try again in " + wait + " s)" : ""));
      return;
    }
    history.replaceState(null, "", "#" + body.id);
    await watch(body.id);
  } catch (e) {
    fail("the connection failed (" + e.message + ")");
  } finally {
    $("send").disabled = false;
  }
}

async function watch(id) {
  const url = "submissions/" + encodeURIComponent(id);
  for (let failures = 0; failures < 20; ) {
    let response;
    try {
      response = await fetch(url + "?wait=25", { headers: headers() });
    } catch (e) {
      failures += 1;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    const body = await readJson(response);
    if (response.status === 202) {
      setState(body.status);
      show(body.status === "queued"
        ? "Waiting to be graded (" + body.position + " ahead of yours)..."
        : "Running your notebook...");
      continue;
    }
    if (response.status !== 200) {
      fail(body.detail || "the server answered " + response.status);
      return;
    }
    graded(url, body);
    return;
  }
  fail("the server cannot be reached; reload this page to see your result");
}

function graded(url, result) {
  const full = result.score === result.max_score;
  show("Graded: " + result.score + " / " + result.max_score + " points", full ? "full" : "partial");
  const link = $("feedback-link");
  link.href = url + "/feedback";
  link.hidden = false;
  const frame = $("feedback");
  frame.onload = () => setState("done");
  frame.src = url + "/feedback";
  frame.hidden = false;
}

$("upload").addEventListener("submit", upload);
loadAssignments().then(() => {
  const id = location.hash.slice(1);
  if (id) watch(id);
}).catch((e) => fail("the assignments could not be loaded (" + e.message + ")"));
"""
