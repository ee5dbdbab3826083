//! Orders per second and p99 latency over the last minutes, from the
//! order-service's cumulative counters.
//!
//! order-service exposes `stockroom_http_requests_total{method,route,status}`
//! and the histogram `stockroom_http_request_duration_seconds{route}` (one
//! per instance). Each poll sums them over the instances; the difference
//! between two polls is what happened in between: its count over the time
//! elapsed is the rate, and its buckets give the p99, interpolated inside
//! the bucket the way Prometheus' `histogram_quantile` does. A counter that
//! went down belongs to an instance that restarted: its new value is then the
//! difference.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::prometheus::Sample;

/// How many points the chart keeps: five minutes at one point a second.
pub const HISTORY_POINTS: usize = 300;

/// The route of placing orders, as order-service's metrics name it.
pub const PLACE_ORDER_ROUTE: &str = "/api/orders";

const REQUESTS_TOTAL: &str = "stockroom_http_requests_total";
const DURATION_BUCKET: &str = "stockroom_http_request_duration_seconds_bucket";

/// The quantile the chart shows.
const LATENCY_QUANTILE: f64 = 0.99;

/// Order-service's cumulative figures at one poll, summed over instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderCounters {
    /// `POST /api/orders` answered, whatever the answer.
    pub answered: f64,
    /// Answered 2xx: reserved.
    pub reserved: f64,
    /// Answered 409: rejected for insufficient stock.
    pub rejected: f64,
    /// The latency histogram of the orders route: cumulative count per upper
    /// bound in seconds (`+Inf` last).
    pub latency: Vec<(f64, f64)>,
}

impl OrderCounters {
    /// The figures of one or more instances' samples.
    pub fn from_samples(samples: &[Sample]) -> OrderCounters {
        let mut counters = OrderCounters::default();
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for sample in samples {
            if sample.label("route") != Some(PLACE_ORDER_ROUTE) {
                continue;
            }
            if sample.name == REQUESTS_TOTAL && sample.label("method") == Some("POST") {
                counters.answered += sample.value;
                match sample.label("status").unwrap_or("") {
                    status if status.starts_with('2') => counters.reserved += sample.value,
                    "409" => counters.rejected += sample.value,
                    _ => {}
                }
            } else if sample.name == DURATION_BUCKET {
                let Some(bound) = sample.label("le").and_then(parse_bound) else {
                    continue;
                };
                // Bounds are keyed by their bits so equal bounds of several
                // instances add up; every bound here is positive, where the
                // bits sort as the numbers do.
                buckets.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += sample.value;
            }
        }
        counters.latency = buckets.into_values().collect();
        counters
    }
}

fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => text.parse().ok().filter(|bound: &f64| *bound >= 0.0),
    }
}

/// One point of the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// When the interval ended, in milliseconds since the epoch.
    pub at_ms: i64,
    pub orders_per_second: f64,
    pub reserved_per_second: f64,
    pub rejected_per_second: f64,
    /// The p99 latency of the orders answered in the interval; none when no
    /// order was.
    pub p99_ms: Option<f64>,
}

/// The chart's points and the last reading they continue from.
#[derive(Debug, Default)]
pub struct Traffic {
    points: VecDeque<Point>,
    last: Option<(i64, OrderCounters)>,
}

impl Traffic {
    /// Adds the interval since the last reading; `None` (order-service could
    /// not be read) leaves a gap, and the next reading starts afresh.
    pub fn record(&mut self, at_ms: i64, counters: Option<OrderCounters>) {
        let Some(counters) = counters else {
            self.last = None;
            return;
        };
        if let Some((last_ms, last)) = &self.last
            && at_ms > *last_ms
        {
            let seconds = (at_ms - last_ms) as f64 / 1_000.0;
            let delta = |now: f64, before: f64| if now >= before { now - before } else { now };
            let buckets = bucket_deltas(&counters.latency, &last.latency);
            if self.points.len() == HISTORY_POINTS {
                self.points.pop_front();
            }
            self.points.push_back(Point {
                at_ms,
                orders_per_second: delta(counters.answered, last.answered) / seconds,
                reserved_per_second: delta(counters.reserved, last.reserved) / seconds,
                rejected_per_second: delta(counters.rejected, last.rejected) / seconds,
                p99_ms: quantile(&buckets, LATENCY_QUANTILE).map(|seconds| seconds * 1_000.0),
            });
        }
        self.last = Some((at_ms, counters));
    }

    pub fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }

    /// Orders answered so far (the latest reading), for a sale's progress.
    pub fn answered(&self) -> Option<f64> {
        self.last.as_ref().map(|(_, counters)| counters.answered)
    }
}

/// The buckets of what happened between two readings. A bucket that went
/// down means an instance restarted: then the whole histogram is taken as
/// the difference.
fn bucket_deltas(now: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let earlier: BTreeMap<u64, f64> = before
        .iter()
        .map(|(bound, count)| (bound.to_bits(), *count))
        .collect();
    let deltas: Option<Vec<(f64, f64)>> = now
        .iter()
        .map(|(bound, count)| {
            let before = earlier.get(&bound.to_bits()).copied().unwrap_or(0.0);
            (*count >= before).then_some((*bound, count - before))
        })
        .collect();
    deltas.unwrap_or_else(|| now.to_vec())
}

/// The `q` quantile of a cumulative histogram, linear inside its bucket (the
/// first bucket starts at 0); in the `+Inf` bucket, the highest finite bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::parse;

    fn exposition(created: u64, conflicts: u64, fast: u64, slow: u64) -> String {
        let total = fast + slow;
        format!(
            "stockroom_http_requests_total{{service=\"order-service\",method=\"POST\",route=\"/api/orders\",status=\"201\"}} {created}\n\
             stockroom_http_requests_total{{service=\"order-service\",method=\"POST\",route=\"/api/orders\",status=\"409\"}} {conflicts}\n\
             stockroom_http_requests_total{{service=\"order-service\",method=\"GET\",route=\"/api/orders\",status=\"200\"}} 1000\n\
             stockroom_http_requests_total{{service=\"order-service\",method=\"GET\",route=\"/health\",status=\"200\"}} 1000\n\
             stockroom_http_request_duration_seconds_bucket{{service=\"order-service\",route=\"/api/orders\",le=\"0.001\"}} {fast}\n\
             stockroom_http_request_duration_seconds_bucket{{service=\"order-service\",route=\"/api/orders\",le=\"0.01\"}} {total}\n\
             stockroom_http_request_duration_seconds_bucket{{service=\"order-service\",route=\"/api/orders\",le=\"+Inf\"}} {total}\n\
             stockroom_http_request_duration_seconds_bucket{{service=\"order-service\",route=\"/health\",le=\"+Inf\"}} 1000\n"
        )
    }

    #[test]
    fn counts_only_placed_orders_and_sums_instances() {
        let mut samples = parse(&exposition(10, 5, 12, 3));
        samples.extend(parse(&exposition(1, 0, 1, 0)));
        let counters = OrderCounters::from_samples(&samples);
        assert_eq!(counters.answered, 16.0);
        assert_eq!(counters.reserved, 11.0);
        assert_eq!(counters.rejected, 5.0);
        assert_eq!(
            counters.latency,
            vec![(0.001, 13.0), (0.01, 16.0), (f64::INFINITY, 16.0)]
        );
    }

    #[test]
    fn rates_and_p99_come_from_the_difference_between_readings() {
        let mut traffic = Traffic::default();
        let reading = |text: String| Some(OrderCounters::from_samples(&parse(&text)));
        traffic.record(1_000, reading(exposition(100, 0, 100, 0)));
        assert!(traffic.points().is_empty(), "one reading is no interval");
        // In the next two seconds: 200 orders, 150 reserved, 50 rejected;
        // 100 took under a millisecond and 100 up to ten.
        traffic.record(3_000, reading(exposition(250, 50, 200, 100)));
        let point = &traffic.points()[0];
        assert_eq!(point.orders_per_second, 100.0);
        assert_eq!(point.reserved_per_second, 75.0);
        assert_eq!(point.rejected_per_second, 25.0);
        // Rank 198 of 200 lies 98/100 of the way into the (1 ms, 10 ms] bucket.
        let p99 = point.p99_ms.unwrap();
        assert!((p99 - (1.0 + 9.0 * 0.98)).abs() < 1e-9, "{p99}");
        // Nothing in the next second: no latency to show.
        traffic.record(4_000, reading(exposition(250, 50, 200, 100)));
        assert_eq!(traffic.points()[1].orders_per_second, 0.0);
        assert_eq!(traffic.points()[1].p99_ms, None);
        assert_eq!(traffic.answered(), Some(300.0));
    }

    #[test]
    fn a_restarted_instance_and_a_gap_are_not_negative_rates() {
        let mut traffic = Traffic::default();
        let reading = |text: String| Some(OrderCounters::from_samples(&parse(&text)));
        traffic.record(0, reading(exposition(500, 0, 500, 0)));
        traffic.record(1_000, reading(exposition(20, 0, 20, 0)));
        assert_eq!(traffic.points()[0].orders_per_second, 20.0);
        assert!(traffic.points()[0].p99_ms.unwrap() <= 1.0);
        traffic.record(2_000, None);
        traffic.record(3_000, reading(exposition(40, 0, 40, 0)));
        assert_eq!(traffic.points().len(), 1, "a gap starts afresh");
    }

    #[test]
    fn keeps_a_bounded_history() {
        let mut traffic = Traffic::default();
        for second in 0..(HISTORY_POINTS as i64 + 50) {
            traffic.record(second * 1_000, Some(OrderCounters::default()));
        }
        assert_eq!(traffic.points().len(), HISTORY_POINTS);
    }

    #[test]
    fn quantiles_of_edge_histograms() {
        assert_eq!(quantile(&[], 0.99), None);
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.99), None);
        // Everything above the last finite bound: the bound is the answer.
        assert_eq!(
            quantile(&[(0.1, 0.0), (f64::INFINITY, 5.0)], 0.99),
            Some(0.1)
        );
        assert_eq!(
            quantile(&[(0.1, 4.0), (f64::INFINITY, 4.0)], 0.5),
            Some(0.05)
        );
    }
}
