// The Stockroom dashboard page: receives one snapshot a second over
// server-sent events and shows it; posts the flash-sale and race-lab forms.
// Live regions announce only changes of state (a violation, a sale's end),
// never the figures that move every second.
"use strict";

(function () {
  const CHART_WINDOW_MS = 5 * 60 * 1000;
  let latest = null;

  const byId = (id) => document.getElementById(id);

  // Builds an element: el("td", {class: "number"}, "12", otherNode).
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const number = (value) =>
    value === null || value === undefined ? "–" : Number(value).toLocaleString();
  const decimal = (value, digits) =>
    value === null || value === undefined
      ? "–"
      : Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
  const clock = (text) => (text ? new Date(text).toLocaleTimeString() : "–");
  const seconds = (ms) => `${decimal(ms / 1000, 1)} s`;

  // Sets text only when it changed, so live regions speak only of changes.
  function say(node, text) {
    if (node.textContent !== text) {
      node.textContent = text;
    }
  }

  function showError(node, message) {
    node.hidden = !message;
    say(node, message ? `Could not read: ${message}` : "");
  }

  function badge(state, text) {
    return el("span", { class: "badge", "data-state": state }, text);
  }

  // --- stock -------------------------------------------------------------

  function renderStock(stock) {
    const rows = stock.products.map((row) => {
      let state;
      if (row.oversold) {
        state = badge("oversold", "OVERSOLD");
      } else if (row.available === 0) {
        state = badge("sold-out", "sold out");
      } else if (row.low) {
        state = badge("low", "low stock");
      } else {
        state = badge("ok", "in stock");
      }
      const problems = row.problems.length
        ? el("span", { class: "visually-hidden" }, ` (${row.problems.join("; ")})`)
        : null;
      const cell = (field, value) =>
        el("td", { class: "number", "data-field": field }, number(value));
      // A setting left unset reads as a dash, not as zero.
      const setting = (field, value) =>
        el("td", { class: "number", "data-field": field }, value === null || value === undefined ? "—" : number(value));
      return el(
        "tr",
        { class: row.oversold ? "oversold" : null, "data-product": row.product },
        el("th", { scope: "row" }, row.product),
        cell("onHand", row.onHand),
        cell("reserved", row.reserved),
        cell("available", row.available),
        cell("sold", row.sold),
        setting("maxPerCustomer", row.maxPerCustomer),
        setting("lowStockThreshold", row.lowStockThreshold),
        el("td", { "data-field": "state", title: row.problems.join("\n") || null }, state, problems),
      );
    });
    byId("stock-rows").replaceChildren(...rows);
    showError(byId("stock-error"), stock.error);
    renderProducts(stock.products.map((row) => row.product));
  }

  // --- stock movements ---------------------------------------------------

  // A change of a figure, with its sign; none reads as a dash.
  const delta = (value) => (value > 0 ? `+${number(value)}` : value < 0 ? number(value) : "—");

  function renderMovements(movements) {
    const note = byId("movements-note");
    note.hidden = !movements.unavailable;
    say(note, movements.unavailable ? `No movement feed: ${movements.unavailable}.` : "");
    byId("movements-table").hidden = Boolean(movements.unavailable);
    const rows = movements.entries.map((entry) =>
      // Not data-product: that names the stock table's rows.
      el("tr", { "data-movement-of": entry.product, "data-kind": entry.kind, "data-seq": entry.seq },
        el("td", {}, el("time", { datetime: new Date(entry.atMs).toISOString() }, new Date(entry.atMs).toLocaleTimeString())),
        el("th", { scope: "row" }, entry.product),
        el("td", { "data-delta": "kind" }, entry.reason ? `${entry.kind} (${entry.reason})` : entry.kind),
        el("td", { class: "number", "data-delta": "onHand" }, delta(entry.onHandDelta)),
        el("td", { class: "number", "data-delta": "reserved" }, delta(entry.reservedDelta)),
        el("td", { class: "number", "data-delta": "sold" }, delta(entry.soldDelta)),
        el("td", { class: "cause", "data-delta": "cause" }, entry.cause || "—")));
    byId("movement-rows").replaceChildren(...(rows.length
      ? rows
      : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No movements yet."))]));
    showError(byId("movements-error"), movements.error);
  }

  // --- webhooks ----------------------------------------------------------

  function renderWebhooks(webhooks) {
    const state = byId("webhooks-state");
    const facts = byId("webhooks-facts");
    facts.hidden = !webhooks.configured;
    if (!webhooks.configured) {
      state.dataset.state = webhooks.error ? "unknown" : "off";
      say(state, webhooks.error ? "Not known: the metrics could not be read." : "No webhook URL configured.");
    } else {
      const trouble = webhooks.deadLetters > 0 || webhooks.retrying > 0;
      state.dataset.state = trouble ? "warn" : "ok";
      say(state, webhooks.deadLetters > 0
        ? `${number(webhooks.deadLetters)} dead letter${webhooks.deadLetters === 1 ? "" : "s"} wait for an operator (stockroom dead-letters list).`
        : trouble ? "Sending; some attempts failed and are retried." : "Sending.");
      for (const node of facts.querySelectorAll("dd[data-fact]")) {
        say(node, number(webhooks[node.dataset.fact]));
      }
    }
    showError(byId("webhooks-error"), webhooks.error);
  }

  // --- traffic -----------------------------------------------------------

  function renderTraffic(traffic) {
    const points = traffic.points;
    const times = points.map((point) => point.atMs);
    const orders = points.map((point) => point.ordersPerSecond);
    const rejected = points.map((point) => point.rejectedPerSecond);
    const latency = points.map((point) => point.p99Ms);
    window.StockroomChart.draw(byId("rate-chart"), times, [
      { values: orders, className: "series-orders" },
      { values: rejected, className: "series-rejected" },
    ], CHART_WINDOW_MS, 1);
    window.StockroomChart.draw(byId("latency-chart"), times, [
      { values: latency, className: "series-latency" },
    ], CHART_WINDOW_MS, 1);
    const last = points[points.length - 1];
    if (last) {
      const peak = Math.max(...orders);
      say(byId("rate-summary"),
        `Now ${decimal(last.ordersPerSecond, 1)} orders/s ` +
        `(${decimal(last.reservedPerSecond, 1)} reserved, ${decimal(last.rejectedPerSecond, 1)} rejected); ` +
        `peak ${decimal(peak, 1)} orders/s in the last 5 minutes.`);
      const known = latency.filter((value) => value !== null);
      say(byId("latency-summary"), known.length
        ? `p99 ${last.p99Ms === null ? "– (no orders this second)" : decimal(last.p99Ms, 2) + " ms"} now; ` +
          `highest ${decimal(Math.max(...known), 2)} ms in the last 5 minutes.`
        : "No orders in the last 5 minutes.");
    }
    showError(byId("traffic-error"), traffic.error);
  }

  // --- orders by status --------------------------------------------------

  function renderOrders(orders) {
    const items = [];
    for (const count of orders.counts) {
      if (count.status === "pending" && count.count === 0) {
        continue; // Stockroom itself never has pending orders.
      }
      items.push(el("dt", {}, count.status));
      items.push(el("dd", { "data-status": count.status },
        number(count.count) + (count.capped ? "+" : "")));
    }
    byId("order-counts").replaceChildren(...items);
    say(byId("orders-total"), orders.error ? "–" : number(orders.total));
    showError(byId("orders-error"), orders.error);
  }

  // --- invariants and the banner -----------------------------------------

  function renderAudit(audit, stock) {
    const report = audit.report;
    const verdict = byId("audit-verdict");
    let state;
    let text;
    if (report.error) {
      state = "unknown";
      text = `The audit could not run: ${report.error}`;
    } else if (!report.audits) {
      state = "unknown";
      text = "Waiting for the first audit…";
    } else if (report.healthy) {
      state = "ok";
      text = `All invariants hold${report.reservedSumChecked ? "" : " (reserved sums not compared: stock was moving)"}.`;
    } else {
      state = "violated";
      text = `${report.violations.length} invariant violation${report.violations.length === 1 ? "" : "s"} now.`;
    }
    verdict.dataset.state = state;
    say(verdict, text);
    say(byId("audit-count"), number(report.audits));
    say(byId("audit-time"), clock(report.checkedAt));
    say(byId("audit-reserved"), number(report.reservedOrders));
    say(byId("audit-seen-count"), number(audit.seenCount));
    const seen = audit.seen.map((entry) => {
      const violation = entry.violation;
      return el("li", { class: entry.current ? "current" : null },
        `${violation.invariant} for ${violation.product}: expected ${violation.expected}, actual ${violation.actual} ` +
        `(first seen ${clock(entry.firstSeenAt)}${entry.current ? ", still now" : `, last seen ${clock(entry.lastSeenAt)}`})`);
    });
    byId("audit-seen").replaceChildren(...(seen.length ? seen : [el("li", { class: "muted" }, "None.")]));
    renderBanner(audit, stock);
  }

  function renderBanner(audit, stock) {
    const banner = byId("banner");
    const current = audit.seen.filter((entry) => entry.current);
    const oversold = stock.products.filter((row) => row.oversold);
    let level = null;
    let text = "";
    if (current.length || oversold.length) {
      level = "violation";
      const first = current.length
        ? `${current[0].violation.invariant} for ${current[0].violation.product}: expected ${current[0].violation.expected}, actual ${current[0].violation.actual}`
        : `${oversold[0].product} is oversold: available ${oversold[0].available}`;
      const more = Math.max(current.length, oversold.length) - 1;
      text = `Invariant violated! ${first}${more > 0 ? ` (and ${more} more)` : ""}.`;
    } else if (audit.seenCount > 0) {
      level = "past";
      text = `${audit.seenCount} invariant violation${audit.seenCount === 1 ? "" : "s"} seen since this dashboard started; none now.`;
    }
    banner.hidden = level === null;
    if (level) {
      banner.dataset.level = level;
    }
    say(banner, text);
  }

  // --- services ----------------------------------------------------------

  function renderServices(services) {
    const cards = services.map((service) => {
      const parts = service.parts.map((part) =>
        el("li", {},
          el("span", { class: "part-name" }, part.name),
          badge(part.status, part.status),
          part.details.length ? el("span", { class: "details" }, part.details.join(", ")) : null));
      return el("li", { class: "service", "data-service": service.name },
        el("h3", {}, service.name, badge(service.status, service.status)),
        el("p", { class: "url" }, service.url),
        parts.length ? el("ul", { class: "parts", "aria-label": `${service.name} parts` }, ...parts) : null,
        service.error ? el("p", { class: "source-error" }, service.error) : null);
    });
    byId("services").replaceChildren(...cards);
  }

  // --- flash sale --------------------------------------------------------

  let knownProducts = "";

  function renderProducts(products) {
    const key = products.join("\n");
    if (key === knownProducts || !products.length) {
      return;
    }
    knownProducts = key;
    const select = byId("sale-product");
    const chosen = select.value;
    select.replaceChildren(...products.map((name) => el("option", { value: name }, name)));
    // The original system's flash sale was of laptops.
    const preferred = chosen || (products.includes("Laptop") ? "Laptop" : products[0]);
    if (products.includes(preferred)) {
      select.value = preferred;
    }
  }

  function renderSale(sale) {
    for (const node of document.querySelectorAll(".max-orders")) say(node, String(sale.maxOrders));
    for (const node of document.querySelectorAll(".max-concurrency")) say(node, String(sale.maxConcurrency));
    byId("sale-orders").max = sale.maxOrders;
    byId("sale-concurrency").max = sale.maxConcurrency;
    const state = byId("sale-state");
    state.dataset.state = sale.state;
    byId("sale-start").disabled = sale.state === "running";
    const progress = byId("sale-progress");
    const progressLabel = byId("sale-progress-label");
    const result = byId("sale-result");
    const request = sale.request;
    const what = request ? `${number(request.orders)} orders for ${request.product}, ${number(request.concurrency)} at a time` : "";
    progress.hidden = progressLabel.hidden = sale.state !== "running";
    if (sale.state === "idle") {
      say(state, "No sale has run yet.");
    } else if (sale.state === "running") {
      say(state, `Flash sale running: ${what}.`);
      progress.max = request.orders;
      progress.value = sale.answered;
      say(progressLabel, `${number(sale.answered)} of ${number(request.orders)} orders answered, ${seconds(sale.elapsedMs)}.`);
    } else if (sale.state === "finished") {
      say(state, `Flash sale finished: ${what}, in ${seconds(sale.elapsedMs)}.`);
    } else {
      say(state, `Flash sale failed: ${sale.error}`);
    }
    const summary = sale.summary;
    result.hidden = !summary;
    if (summary) {
      const facts = [
        ["Reserved", number(summary.reserved)],
        ["Rejected (sold out)", number(summary.rejected)],
        ["Errors", number(summary.errors)],
        ["Throughput", `${decimal(summary.orders_per_s, 0)} orders/s`],
        ["Latency p50 / p99 / max", `${decimal(summary.p50_ms, 2)} / ${decimal(summary.p99_ms, 2)} / ${decimal(summary.max_ms, 2)} ms`],
      ];
      const key = JSON.stringify(facts);
      if (result.dataset.key !== key) {
        result.dataset.key = key;
        result.replaceChildren(...facts.flatMap(([name, value]) => [
          el("dt", {}, name), el("dd", { "data-fact": name }, value)]));
      }
    }
  }

  // The dashboard's token for its controls, which it put in the page; the
  // controls refuse requests that carry neither it nor the page's origin.
  function csrfToken() {
    const meta = document.querySelector('meta[name="stockroom-csrf-token"]');
    return meta ? meta.content : "";
  }

  // Posts a control's form; shows the server's message on a refusal.
  async function post(path, body, errorNode) {
    errorNode.hidden = true;
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-stockroom-csrf-token": csrfToken(),
        },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const document = await response.json().catch(() => ({}));
        throw new Error(document.message || `the dashboard answered ${response.status}`);
      }
    } catch (error) {
      errorNode.textContent = error.message;
      errorNode.hidden = false;
    }
  }

  function withinBounds(input, name) {
    const value = Number(input.value);
    const minimum = Number(input.min);
    const maximum = Number(input.max);
    if (!Number.isInteger(value) || value < minimum || value > maximum) {
      throw new Error(`${name} must be a whole number from ${minimum} to ${maximum}.`);
    }
    return value;
  }

  function startSale(event) {
    event.preventDefault();
    const errorNode = byId("sale-form-error");
    let body;
    try {
      body = {
        product: byId("sale-product").value,
        orders: withinBounds(byId("sale-orders"), "Orders"),
        concurrency: withinBounds(byId("sale-concurrency"), "Concurrent buyers"),
      };
      if (!body.product) {
        throw new Error("Choose a product (the stock is not known yet).");
      }
    } catch (error) {
      errorNode.textContent = error.message;
      errorNode.hidden = false;
      return;
    }
    post("/api/sale", body, errorNode);
  }

  // --- race lab ----------------------------------------------------------

  function renderLab(lab) {
    const select = byId("lab-scenario");
    if (select.options.length === 1) {
      for (const scenario of lab.scenarios) {
        select.append(el("option", { value: scenario.name }, scenario.title));
      }
    }
    const state = byId("lab-state");
    state.dataset.state = lab.state;
    byId("lab-start").disabled = !lab.available || lab.state === "running";
    select.disabled = !lab.available;
    byId("lab-run").disabled = !lab.available;
    if (!lab.available) {
      say(state, "The race lab is not available in this dashboard.");
    } else if (lab.state === "idle") {
      say(state, "The lab has not run yet.");
    } else if (lab.state === "running" && lab.matrix) {
      const step = Math.min(lab.fixRows.length + 1, lab.planned);
      say(state, `Running fix ${step} of ${lab.planned}${lab.current ? `: ${lab.current}` : ""}…`);
    } else if (lab.state === "running") {
      const step = Math.min(lab.results.length + 1, lab.planned);
      say(state, `Running race ${step} of ${lab.planned}${lab.current ? `: ${lab.current}` : ""}…`);
    } else if (lab.state === "finished" && lab.matrix) {
      const undecided = lab.fixRows.flatMap((row) => row.cells).filter((cell) => cell.verdict === "undecided").length;
      const findings = lab.fixRows.flatMap((row) => row.cells).filter((cell) => cell.verdict === "finding").length;
      say(state, `${lab.passed ? "PASS" : "FAIL"}: ${lab.fixRows.length} fixes against ${lab.matrixScenarios.length} scenarios; ` +
        `${findings} findings, ${undecided} undecided (${seconds(lab.elapsedMs)}).`);
    } else if (lab.state === "finished") {
      const reproduced = lab.results.filter((row) => row.naive_reproduced).length;
      const clean = lab.results.filter((row) => row.fixed_violations === 0).length;
      say(state, `${lab.passed ? "PASS" : "FAIL"}: ${reproduced}/${lab.planned} races reproduced on the original system; ` +
        `${clean}/${lab.planned} clean on Stockroom (${seconds(lab.elapsedMs)}).`);
    } else {
      say(state, `The lab failed: ${lab.error}`);
    }
    renderMatrix(lab);
    const table = byId("lab-table");
    table.hidden = lab.matrix || lab.results.length === 0;
    const key = JSON.stringify(lab.results.map((row) => row.name));
    if (table.dataset.key !== key) {
      table.dataset.key = key;
      byId("lab-rows").replaceChildren(...lab.results.map((row) => {
        const naive = row.naive_reproduced
          ? (row.naive_anomalies[0] || "reproduced")
          : "NOT REPRODUCED";
        const fixed = row.fixed_violations === 0
          ? `ok: ${row.fixed_result}`
          : `VIOLATED (${row.fixed_violations}): ${row.fixed_details.join("; ")}`;
        return el("tr", { "data-scenario": row.name },
          el("th", { scope: "row" }, row.title),
          el("td", { class: row.naive_reproduced ? "reproduced" : null }, naive),
          el("td", { class: row.fixed_violations === 0 ? "clean" : "violated" }, fixed));
      }));
    }
  }

  // The fix matrix: one row per finished fix, one column per scenario.
  function renderMatrix(lab) {
    const table = byId("fix-matrix");
    table.hidden = !lab.matrix || lab.fixRows.length === 0;
    byId("fix-matrix-note").hidden = table.hidden;
    const key = JSON.stringify([lab.matrixScenarios, lab.fixRows.map((row) => row.name)]);
    if (!lab.matrix || table.dataset.key === key) {
      return;
    }
    table.dataset.key = key;
    byId("fix-matrix-head").replaceChildren(
      el("th", { scope: "col" }, "Fix"),
      ...lab.matrixScenarios.map((name) => el("th", { scope: "col" }, name)),
      el("th", { scope: "col", class: "number" }, "Orders/s"));
    byId("fix-matrix-rows").replaceChildren(...lab.fixRows.map((row) =>
      el("tr", { "data-fix": row.name },
        el("th", { scope: "row", title: row.source }, row.name),
        ...row.cells.map((cell) => el("td", {
          class: `verdict-${cell.verdict}`,
          "data-scenario": cell.name,
          title: cell.evidence,
        }, cell.short)),
        el("td", { class: "number" }, row.ordersPerS == null ? "–" : Math.round(row.ordersPerS).toString()))));
  }

  function startLab(event) {
    event.preventDefault();
    const scenario = byId("lab-scenario").value;
    const body = { scenarios: scenario ? [scenario] : [] };
    if (byId("lab-run").value === "matrix") {
      body.matrix = true;
    }
    post("/api/lab", body, byId("lab-form-error"));
  }

  // --- the stream --------------------------------------------------------

  function render(snapshot) {
    if (!snapshot || !snapshot.sequence) {
      return;
    }
    latest = snapshot;
    renderStock(snapshot.stock);
    if (snapshot.movements) renderMovements(snapshot.movements);
    if (snapshot.webhooks) renderWebhooks(snapshot.webhooks);
    renderTraffic(snapshot.traffic);
    renderOrders(snapshot.orders);
    renderAudit(snapshot.audit, snapshot.stock);
    renderServices(snapshot.services);
    renderSale(snapshot.sale);
    renderLab(snapshot.lab);
    say(byId("snapshot-sequence"), String(snapshot.sequence));
    const time = byId("snapshot-time");
    time.dateTime = snapshot.takenAt;
    say(time, clock(snapshot.takenAt));
    document.body.dataset.sequence = String(snapshot.sequence);
  }

  function connection(state, text) {
    const node = byId("connection");
    node.dataset.state = state;
    say(node, text);
  }

  function connect() {
    const stream = new EventSource("/api/stream");
    stream.addEventListener("open", () => connection("live", "Live"));
    stream.addEventListener("error", () => connection("lost", "Connection lost; reconnecting…"));
    stream.addEventListener("snapshot", (event) => {
      try {
        render(JSON.parse(event.data));
      } catch (error) {
        console.error("cannot show a snapshot", error);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("sale-form").addEventListener("submit", startSale);
    byId("lab-form").addEventListener("submit", startLab);
    window.addEventListener("resize", () => latest && renderTraffic(latest.traffic));
    connect();
  });
})();
