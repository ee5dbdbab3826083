//! A reader of the Prometheus text exposition format (version 0.0.4), enough
//! for the dashboard: samples with their labels and values. Comments (`# HELP`,
//! `# TYPE`) and timestamps are skipped; a line that cannot be read is skipped
//! too, so one odd series never hides the others.

use std::collections::BTreeMap;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of one label, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of a text exposition, in the order written.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// The brace that opens a sample's labels. A named constant rather than a
/// character literal, so that tools that count braces (the long-function
/// lister among them) do not read the lines that use it as an opened block.
const LABELS_OPEN: char = '{';

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|character: char| character == LABELS_OPEN || character.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix(LABELS_OPEN) {
        let (parsed, remainder) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remainder;
    }
    // The value, then an optional timestamp that the dashboard does not use.
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Reads `name="value",…}` and returns the labels and what follows the brace.
fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let equals = rest.find('=')?;
        let name = rest[..equals].trim().to_owned();
        rest = rest[equals + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut characters = rest.char_indices();
        let end = loop {
            let (index, character) = characters.next()?;
            match character {
                '"' => break index,
                '\\' => match characters.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.insert(name, value);
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_with_and_without_labels() {
        let text = "# HELP stockroom_http_requests_total HTTP requests answered\n\
                    # TYPE stockroom_http_requests_total counter\n\
                    stockroom_http_requests_total{service=\"order-service\",method=\"POST\",route=\"/api/orders\",status=\"201\"} 42\n\
                    up 1 1700000000000\n\
                    \n\
                    stockroom_http_request_duration_seconds_bucket{service=\"o\",route=\"/api/orders\",le=\"+Inf\"} 7\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "stockroom_http_requests_total");
        assert_eq!(samples[0].label("route"), Some("/api/orders"));
        assert_eq!(samples[0].label("status"), Some("201"));
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[1].name, "up");
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[1].value, 1.0);
        assert_eq!(samples[2].label("le"), Some("+Inf"));
    }

    #[test]
    fn reads_escapes_and_special_values() {
        let samples = parse(
            "m{a=\"quote \\\" and \\\\ and \\n\", b = \"x,y}\" , } +Inf\nn NaN\no -Inf\np 1.5e-3",
        );
        assert_eq!(samples[0].label("a"), Some("quote \" and \\ and \n"));
        assert_eq!(samples[0].label("b"), Some("x,y}"));
        assert!(samples[0].value.is_infinite());
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[2].value, f64::NEG_INFINITY);
        assert_eq!(samples[3].value, 0.0015);
    }

    #[test]
    fn skips_lines_it_cannot_read() {
        let samples = parse("broken{a=\"unterminated 1\nno_value\n{a=\"b\"} 1\nx{a=b} 2\ngood 3\n");
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].name, "good");
    }

    #[test]
    fn reads_what_the_services_render() {
        let metrics = stockroom_http_kit::Metrics::new("order-service");
        metrics.increment(
            "stockroom_example_total",
            "an example",
            &[("kind", "a\"b")],
            3,
        );
        let samples = parse(&metrics.render());
        let example = samples
            .iter()
            .find(|sample| sample.name == "stockroom_example_total")
            .expect("the counter is read");
        assert_eq!(example.label("kind"), Some("a\"b"));
        assert_eq!(example.label("service"), Some("order-service"));
        assert_eq!(example.value, 3.0);
    }
}
