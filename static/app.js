// The page's behaviour: search with a pasted key (kept in this tab's sessionStorage, never in
// a URL), and the API reference drawn from /openapi.json. No other host is ever contacted.
"use strict";

const KEY_STORE = "clientele.key";
const $ = (id) => document.getElementById(id);

function text(tag, value, className) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (className) node.className = className;
  return node;
}

async function search(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  const query = $("query").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
  const param = /^[0-9]+$/.test(query) ? "id_client" : query.includes("@") ? "email" : "login";
  const headers = key ? { "X-API-Key": key } : {};
  $("search-status").textContent = "Searching…";
  let data;
  try {
    const res = await fetch(`/CUSTOMER/LIST/?${param}=${encodeURIComponent(query)}`, { headers });
    data = await res.json();
    if (data.success !== "true") throw new Error(data.message);
  } catch (error) {
    $("search-status").textContent = `Not found: ${error.message}`;
    $("results").hidden = true;
    return;
  }
  const customers = data.result.customer;
  $("search-status").textContent = `${customers.length} customer(s) found`;
  const table = $("results");
  const head = table.tHead, body = table.tBodies[0];
  head.replaceChildren(); body.replaceChildren();
  if (customers.length === 0) { table.hidden = true; return; }
  const columns = Object.keys(customers[0]);
  const row = document.createElement("tr");
  columns.forEach((name) => row.append(text("th", name)));
  head.append(row);
  for (const customer of customers) {
    const tr = document.createElement("tr");
    columns.forEach((name) => tr.append(text("td", String(customer[name]))));
    body.append(tr);
  }
  table.hidden = false;
}

function curl(path, method, operation) {
  const origin = window.location.origin;
  let line = `curl -s`;
  if (method !== "get") line += ` -X ${method.toUpperCase()}`;
  line += ` '${origin}${path}'`;
  const secured = !(operation.security && operation.security.length === 1
    && Object.keys(operation.security[0]).length === 0);
  if (secured) line += ` -H 'X-API-Key: KEY'`;
  if (operation.requestBody) {
    line += ` -H 'Content-Type: application/json' -d '{}'`;
  }
  return line;
}

async function reference() {
  let doc;
  try {
    doc = await (await fetch("/openapi.json")).json();
  } catch (error) {
    $("operations").textContent = "The API document could not be read.";
    return;
  }
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      const box = text("div", "", "op");
      const title = document.createElement("h3");
      title.append(text("span", method.toUpperCase(), "method"), text("code", path));
      box.append(title, text("p", operation.summary || ""));
      const command = curl(path, method, operation);
      const pre = text("pre", command);
      const copy = text("button", "Copy curl", "copy");
      copy.type = "button";
      copy.addEventListener("click", () => navigator.clipboard.writeText(command));
      box.append(pre, copy);
      $("operations").append(box);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").hidden = false;
  $("key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("search-form").addEventListener("submit", search);
  reference();
});
