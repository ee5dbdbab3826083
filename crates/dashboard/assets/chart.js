// A small line chart in SVG for the dashboard: a time axis over a fixed
// window ending now, a value axis from zero to a round maximum, and one
// path per series, broken where a value is missing.
"use strict";

window.StockroomChart = (function () {
  const SVG_NAMESPACE = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 48, right: 12, top: 12, bottom: 24 };

  function element(name, attributes, text) {
    const node = document.createElementNS(SVG_NAMESPACE, name);
    for (const [key, value] of Object.entries(attributes)) {
      node.setAttribute(key, String(value));
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  // The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`.
  function roundMaximum(value) {
    if (!(value > 0)) {
      return 1;
    }
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * power >= value) {
        return step * power;
      }
    }
    return 10 * power;
  }

  function label(value) {
    if (value >= 1000) {
      return (value / 1000).toLocaleString(undefined, { maximumFractionDigits: 1 }) + "k";
    }
    return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  // Draws `series` ([{values, className}], values aligned with `times` in ms
  // since the epoch) over the `windowMs` ending at the last time.
  function draw(svg, times, series, windowMs, minimumMaximum) {
    const width = Math.max(svg.clientWidth || 600, 200);
    const height = Math.max(svg.clientHeight || 200, 100);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren();
    const plotWidth = width - MARGIN.left - MARGIN.right;
    const plotHeight = height - MARGIN.top - MARGIN.bottom;
    let highest = minimumMaximum;
    for (const line of series) {
      for (const value of line.values) {
        if (value !== null && value > highest) {
          highest = value;
        }
      }
    }
    const maximum = roundMaximum(highest);
    const end = times.length ? times[times.length - 1] : Date.now();
    const x = (time) => MARGIN.left + plotWidth * (1 - (end - time) / windowMs);
    const y = (value) => MARGIN.top + plotHeight * (1 - value / maximum);

    for (const fraction of [0, 0.5, 1]) {
      const value = maximum * fraction;
      svg.appendChild(element("line", {
        class: "grid-line", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value),
      }));
      svg.appendChild(element("text", {
        class: "axis-label", x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end",
      }, label(value)));
    }
    const minutes = Math.round(windowMs / 60000);
    svg.appendChild(element("text", {
      class: "axis-label", x: MARGIN.left, y: height - 6, "text-anchor": "start",
    }, `${minutes} min ago`));
    svg.appendChild(element("text", {
      class: "axis-label", x: width - MARGIN.right, y: height - 6, "text-anchor": "end",
    }, "now"));

    for (const line of series) {
      let path = "";
      line.values.forEach((value, index) => {
        const time = times[index];
        if (value === null || end - time > windowMs) {
          return;
        }
        const before = index > 0 ? line.values[index - 1] : null;
        const after = index + 1 < line.values.length ? line.values[index + 1] : null;
        path += `${before === null ? "M" : "L"}${x(time).toFixed(1)},${y(value).toFixed(1)} `;
        if (before === null && after === null) {
          // A lone value (one busy second between idle ones) is a dot.
          svg.appendChild(element("circle", {
            class: line.className + " dot", cx: x(time).toFixed(1), cy: y(value).toFixed(1), r: 3,
          }));
        }
      });
      if (path) {
        svg.appendChild(element("path", { class: line.className, d: path.trim() }));
      }
    }
  }

  return { draw, roundMaximum };
})();
