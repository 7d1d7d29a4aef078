// The qa page: ask /ask, show the answer in its passage and the passages read.
// Every piece of text from the server goes into the page through textContent, never
// innerHTML, so markup inside an article is shown as text and never runs.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// Python offsets count code points; JavaScript strings count UTF-16 units.
// Array.from splits by code point, so slices agree with the server's spans.
function marked(text, marks) {
  const chars = Array.from(text);
  const out = document.createDocumentFragment();
  let cursor = 0;
  const sorted = marks.slice().sort((a, b) => a.start - b.start || b.end - a.end);
  for (const m of sorted) {
    const start = Math.max(m.start, cursor);
    const end = Math.min(m.end, chars.length);
    if (end <= start) continue;
    out.append(chars.slice(cursor, start).join(""));
    out.append(el("mark", chars.slice(start, end).join(""), m.className || ""));
    cursor = end;
  }
  out.append(chars.slice(cursor).join(""));
  return out;
}

function where(source) {
  return [source.publisher, source.title, "paragraph " + source.paragraph].filter(Boolean).join(" · ");
}

function sourceLine(source, describe = true) {
  const line = el("span", describe ? where(source) + " — " : "");
  if (/^https?:\/\//i.test(source.url || "")) {
    const link = el("a", source.url);
    link.href = source.url;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    line.append(link);
  } else {
    line.append(el("code", source.path + ":" + source.char_start + "-" + source.char_end));
  }
  return line;
}

function showStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

function render(answer) {
  const answered = answer.text !== null && answer.span !== null && answer.evidence.length > 0;
  const marks = new Map();
  const add = (passageId, start, end, className) => {
    if (!marks.has(passageId)) marks.set(passageId, []);
    marks.get(passageId).push({ start, end, className });
  };
  for (const alt of answer.alternatives) add(alt.evidence.passage_id, alt.span[0], alt.span[1], "alt");

  const section = $("answer");
  $("answer-passage").replaceChildren();
  $("answer-source").replaceChildren();
  if (answered) {
    const best = answer.evidence[0];
    add(best.passage_id, answer.span[0], answer.span[1], "");
    $("answer-text").textContent = answer.text;
    $("confidence").textContent = "(confidence " + answer.confidence.toFixed(2) + ")";
    $("answer-passage").append(marked(best.text, [{ start: answer.span[0], end: answer.span[1] }]));
    $("answer-source").append(sourceLine(best.source));
  } else {
    $("answer-text").textContent = "no answer found in the corpus";
    $("confidence").textContent = "(confidence " + answer.confidence.toFixed(2) + ")";
  }
  const others = answer.alternatives.map(
    (a) => a.text + " (" + a.confidence.toFixed(2) + ", paragraph " + a.evidence.source.paragraph + ")");
  $("alternatives").textContent = others.length
    ? (answered ? "Also possible: " : "Candidates it did not trust: ") + others.join("; ")
    : "";
  section.hidden = false;

  const list = $("hit-list");
  list.replaceChildren();
  const hits = answer.evidence.slice().sort((a, b) => a.rank - b.rank);
  for (const hit of hits) {
    const item = el("li");
    item.value = hit.rank;
    item.dataset.passageId = hit.passage_id;
    item.append(el("div", "(" + hit.score.toFixed(3) + ") " + where(hit.source), "hit-head"));
    const text = el("div", null, "hit-text");
    text.append(marked(hit.text, marks.get(hit.passage_id) || []));
    item.append(text);
    const source = el("div", null, "source");
    source.append(sourceLine(hit.source, false));
    item.append(source);
    list.append(item);
  }
  $("hits").hidden = hits.length === 0;
}

async function ask(question) {
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) {
    headers.Authorization = "Bearer " + token;
    sessionStorage.setItem("qa-token", token);
  }
  showStatus("Searching…", false);
  $("ask-button").disabled = true;
  try {
    const response = await fetch("/ask", { method: "POST", headers, body: JSON.stringify({ question, k: 5 }) });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (response.status === 401) {
      $("token-box").open = true;
      $("token").focus();
      showStatus("This server needs an access token: enter it under “Access token” and ask again.", true);
      return;
    }
    if (!response.ok) {
      showStatus(body.error || ("error " + response.status), true);
      return;
    }
    showStatus("", false);
    $("token-box").open = false;
    render(body);
    const url = new URL(window.location.href);
    url.searchParams.set("q", question);
    window.history.replaceState(null, "", url);
  } catch (err) {
    showStatus("Could not reach the server: " + err, true);
  } finally {
    $("ask-button").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("qa-token") || "";
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (question) ask(question);
  });
  const initial = new URL(window.location.href).searchParams.get("q");
  if (initial) {
    $("question").value = initial;
    ask(initial);
  }
});
