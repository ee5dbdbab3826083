// The dashboard in headless Chromium, driven by playwright-core. Run by the
// end-to-end test `browser.rs`, which starts a system and its dashboard and
// passes: CHROMIUM (the browser's path), DASHBOARD_URL, ORDER_URL, DATA_URL,
// OPERATOR_TOKEN (the system's, which the dashboard also holds), SCREENSHOT
// and PHONE_SCREENSHOT (where to save the pictures).
//
// It checks, as an operator would see it: the page shows the stock with
// each product's purchase limit and low-stock threshold; orders placed
// through the API change the numbers on the page and appear in the movement
// feed, and so does an operator's adjustment; a flash sale run
// from the page's form reports its progress and result and sells exactly
// the stock, sending the dashboard's token with its request; the page fits a
// phone's screen; every form field has a label.
"use strict";

const assert = require("node:assert/strict");
const { chromium } = require("playwright-core");

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} must be set`);
  return value;
};

const DASHBOARD_URL = env("DASHBOARD_URL");
const ORDER_URL = env("ORDER_URL");
const DATA_URL = env("DATA_URL");
const OPERATOR_TOKEN = env("OPERATOR_TOKEN");
const STEP_TIMEOUT_MS = 30_000;

function log(message) {
  process.stdout.write(`browser: ${message}\n`);
}

// The text of one figure of a product's row, as a number.
async function figure(page, product, field) {
  const text = await page.textContent(`tr[data-product="${product}"] [data-field="${field}"]`);
  return Number(text.replace(/[^0-9-]/g, ""));
}

async function waitForFigure(page, product, field, expected) {
  await page.waitForFunction(
    ([selector, wanted]) => {
      const node = document.querySelector(selector);
      return node && Number(node.textContent.replace(/[^0-9-]/g, "")) === wanted;
    },
    [`tr[data-product="${product}"] [data-field="${field}"]`, expected],
    { timeout: STEP_TIMEOUT_MS },
  );
}

async function placeOrder(customer) {
  const response = await fetch(`${ORDER_URL}/api/orders`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ productName: "Laptop", quantity: 1, customerId: customer }),
  });
  assert.equal(response.status, 201, `an order is reserved: ${await response.text()}`);
}

// A call to one of data-service's operator routes.
async function operator(method, path, body, headers = {}) {
  const response = await fetch(`${DATA_URL}${path}`, {
    method,
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${OPERATOR_TOKEN}`,
      ...headers,
    },
    body: JSON.stringify(body),
  });
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.text()}`);
}

// The text of one cell of a product's row in the stock table.
async function setting(page, product, field) {
  return (await page.textContent(`#stock-rows tr[data-product="${product}"] [data-field="${field}"]`)).trim();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: env("CHROMIUM"),
    // The CI machine runs as root, where Chromium's sandbox cannot start;
    // the rest keep Chromium from calling out to the network on its own (the
    // machine has none: only the dashboard on this host is reached).
    args: [
      "--no-sandbox",
      "--disable-dev-shm-usage",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-default-apps",
    ],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (error) => errors.push(error.message));
    page.on("console", (message) => message.type() === "error" && errors.push(message.text()));

    await page.goto(DASHBOARD_URL);
    await page.waitForSelector("body[data-sequence]", { timeout: STEP_TIMEOUT_MS });
    await page.waitForSelector("#connection[data-state=live]", { timeout: STEP_TIMEOUT_MS });
    assert.equal(await figure(page, "Laptop", "available"), 25);
    assert.equal(await page.textContent("#orders-total"), "0");
    log("the page shows the stock: 25 laptops available, no orders");

    // Orders through the API: the numbers on the page follow.
    const before = Number(await page.getAttribute("body", "data-sequence"));
    for (let index = 0; index < 5; index += 1) {
      await placeOrder(`browser-${index}`);
    }
    await waitForFigure(page, "Laptop", "available", 20);
    await page.waitForFunction(() => document.querySelector("#orders-total").textContent === "5",
      null, { timeout: STEP_TIMEOUT_MS });
    await waitForFigure(page, "Laptop", "sold", 5);
    const after = Number(await page.getAttribute("body", "data-sequence"));
    assert.ok(after > before, "snapshots keep coming");
    log(`after 5 orders through the API: 20 available, 5 sold (snapshots ${before} → ${after})`);

    // The movement feed shows the orders' movements, newest first.
    await page.waitForSelector('#movement-rows tr[data-movement-of="Laptop"][data-kind="sold"]',
      { timeout: STEP_TIMEOUT_MS });
    await page.waitForSelector('#movement-rows tr[data-movement-of="Laptop"][data-kind="reserved"]',
      { timeout: STEP_TIMEOUT_MS });
    const cause = await page.textContent('#movement-rows tr[data-movement-of="Laptop"][data-kind="reserved"] [data-delta="cause"]');
    assert.match(cause, /^order /, "an order's movement names its order");
    log("the movement feed shows the orders' reservations and sales");

    // The limit column: unset reads as a dash; an operator's limit and an
    // adjustment through data-service's operator routes show up.
    assert.equal(await setting(page, "Phone", "maxPerCustomer"), "—");
    assert.equal(await setting(page, "Phone", "lowStockThreshold"), "—");
    await operator("PATCH", "/inventory/Phone", { maxPerCustomer: 3, lowStockThreshold: 60 });
    await operator("POST", "/inventory/Phone/adjustments",
      { delta: 7, reason: "received", reference: "PO-browser-1" },
      { "idempotency-key": "browser-adjustment-1" });
    const adjusted = '#movement-rows tr[data-movement-of="Phone"][data-kind="adjusted"]';
    await page.waitForSelector(adjusted, { timeout: STEP_TIMEOUT_MS });
    assert.equal((await page.textContent(`${adjusted} [data-delta="cause"]`)).trim(), "PO-browser-1");
    assert.equal((await page.textContent(`${adjusted} [data-delta="onHand"]`)).trim(), "+7");
    assert.match(await page.textContent(`${adjusted} [data-delta="kind"]`), /adjusted \(received\)/);
    await waitForFigure(page, "Phone", "available", 57);
    const settings = '#movement-rows tr[data-movement-of="Phone"][data-kind="settings"] [data-delta="cause"]';
    assert.equal((await page.textContent(settings)).trim(), "limit 3 per customer, low at 60");
    assert.equal(await setting(page, "Phone", "maxPerCustomer"), "3");
    assert.equal(await setting(page, "Phone", "lowStockThreshold"), "60");
    assert.match(await setting(page, "Phone", "state"), /low stock/);
    log("an adjustment appears in the feed; the limit and threshold columns show the operator's settings");

    // Webhooks are not configured in this system: the panel says so.
    await page.waitForFunction(
      () => document.querySelector("#webhooks-state").textContent === "No webhook URL configured.",
      null, { timeout: STEP_TIMEOUT_MS });

    // A refused form says why, next to the form.
    await page.fill("#sale-orders", "0");
    await page.click("#sale-start");
    await page.waitForSelector("#sale-form-error:not([hidden])", { timeout: STEP_TIMEOUT_MS });
    log(`a sale of 0 orders is refused: ${await page.textContent("#sale-form-error")}`);

    // A flash sale from the page's form. The page sends the dashboard's
    // token, which it carries in a <meta> element, beside its origin.
    await page.selectOption("#sale-product", "Laptop");
    await page.fill("#sale-orders", "150");
    await page.fill("#sale-concurrency", "16");
    const posted = page.waitForRequest(
      (request) => request.method() === "POST" && request.url().endsWith("/api/sale"),
      { timeout: STEP_TIMEOUT_MS });
    await page.click("#sale-start");
    const saleHeaders = await (await posted).allHeaders();
    const token = await page.getAttribute('meta[name="stockroom-csrf-token"]', "content");
    assert.match(token, /^[0-9a-f]{64}$/, "the page carries a token");
    assert.equal(saleHeaders["x-stockroom-csrf-token"], token, "the control request carries it");
    assert.equal(saleHeaders["origin"], new URL(DASHBOARD_URL).origin);
    await page.waitForSelector("#sale-form-error[hidden]", { state: "attached", timeout: STEP_TIMEOUT_MS });
    await page.waitForSelector("#sale-state[data-state=finished]", { timeout: 120_000 });
    const reserved = Number((await page.textContent('#sale-result [data-fact="Reserved"]')).replace(/\D/g, ""));
    const rejected = Number((await page.textContent('#sale-result [data-fact="Rejected (sold out)"]')).replace(/\D/g, ""));
    const errorsInSale = Number((await page.textContent('#sale-result [data-fact="Errors"]')).replace(/\D/g, ""));
    assert.equal(reserved, 20, "the sale reserves exactly the 20 laptops left");
    assert.equal(rejected, 130);
    assert.equal(errorsInSale, 0);
    await waitForFigure(page, "Laptop", "available", 0);
    await waitForFigure(page, "Laptop", "sold", 25);
    assert.equal(await page.isHidden("#banner"), true, "no invariant is violated");
    assert.match(await page.textContent("#audit-verdict"), /All invariants hold/);
    log(`flash sale of 150 from the page: ${reserved} reserved, ${rejected} rejected; laptops sold out, nothing oversold`);

    // Every field is labelled; the banner is an alert.
    const unlabelled = await page.$$eval("input, select", (fields) =>
      fields.filter((field) => !field.labels || field.labels.length === 0).map((field) => field.id));
    assert.deepEqual(unlabelled, [], "every form field has a label");
    assert.equal(await page.getAttribute("#banner", "role"), "alert");
    assert.deepEqual(errors, [], "no script errors");

    await page.waitForTimeout(1_500); // one more snapshot, so the chart shows the sale's second
    await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });
    log(`screenshot: ${process.env.SCREENSHOT}`);

    // On a phone: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(1_200);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone's screen`);
    await page.screenshot({ path: env("PHONE_SCREENSHOT"), fullPage: true });
    log(`phone screenshot: ${process.env.PHONE_SCREENSHOT}`);
  } finally {
    await browser.close();
  }
}

main().then(
  () => log("ok"),
  (error) => {
    process.stderr.write(`browser: FAILED: ${error.stack || error}\n`);
    process.exit(1);
  },
);
