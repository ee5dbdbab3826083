//! An SVG chart of a benchmark report: throughput and p99 latency of every
//! system's throughput phase, hot product and cold catalogue side by side.

use crate::{BenchReport, PhaseResult, Scenario};

const WIDTH: f64 = 900.0;
/// The least height of a panel; more bars than fit make it taller.
const PANEL_HEIGHT: f64 = 260.0;
const LEFT: f64 = 200.0;
const BAR_HEIGHT: f64 = 14.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One horizontal bar panel: a bar per system and scenario.
fn panel(
    out: &mut String,
    report: &BenchReport,
    top: f64,
    title: &str,
    value: impl Fn(&PhaseResult) -> f64,
    unit: &str,
) {
    let rows: Vec<_> = report
        .phases
        .iter()
        .filter(|phase| phase.phase == "throughput")
        .collect();
    let maximum = rows.iter().map(|phase| value(phase)).fold(1e-9, f64::max);
    out.push_str(&format!(
        r#"<text x="10" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        top + 18.0,
        escape(title)
    ));
    for (index, phase) in rows.iter().enumerate() {
        let y = top + 30.0 + index as f64 * (BAR_HEIGHT + 4.0);
        let width = (value(phase) / maximum) * (WIDTH - LEFT - 120.0);
        let color = match (phase.system, phase.scenario) {
            ("stockroom", Scenario::HotSku) => "#1f77b4",
            ("stockroom", Scenario::Cold) => "#6baed6",
            (_, Scenario::HotSku) => "#7f7f7f",
            (_, Scenario::Cold) => "#c7c7c7",
        };
        let scenario = match phase.scenario {
            Scenario::HotSku => "hot",
            Scenario::Cold => "cold",
        };
        // Over several rounds every round has a bar of its own.
        let scenario = if report.settings.rounds > 1 {
            format!("{scenario}, round {}", phase.round)
        } else {
            scenario.to_owned()
        };
        out.push_str(&format!(
            r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{} ({scenario})</text><rect x="{LEFT}" y="{}" width="{width:.1}" height="{BAR_HEIGHT}" fill="{color}"/><text x="{}" y="{}" font-size="12">{:.1} {unit}</text>"#,
            LEFT - 6.0,
            y + 11.0,
            escape(phase.system),
            y,
            LEFT + width + 6.0,
            y + 11.0,
            value(phase),
        ));
    }
}

/// The chart as an SVG document.
pub fn render_svg(report: &BenchReport) -> String {
    // A panel grows with its bars: over several rounds each round has its own.
    let bars = report
        .phases
        .iter()
        .filter(|phase| phase.phase == "throughput")
        .count();
    let panel_height = PANEL_HEIGHT.max(40.0 + bars as f64 * (BAR_HEIGHT + 4.0));
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#,
        panel_height * 2.0 + 20.0
    );
    panel(
        &mut out,
        report,
        0.0,
        "Throughput (orders/s, higher is better)",
        |phase| phase.orders_per_s,
        "/s",
    );
    panel(
        &mut out,
        report,
        panel_height,
        "p99 latency (ms, lower is better)",
        |phase| phase.p99_ms,
        "ms",
    );
    out.push_str("</svg>\n");
    out
}
