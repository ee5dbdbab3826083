//! The webhook panel: how data-service's deliveries went, from its public
//! `/metrics`. Delivery counts are per process, so they add up across
//! data-service instances; the outbox and its dead letters are shared by
//! every instance, which all report the same figure, so the largest is
//! taken.

use serde::Serialize;
use stockroom_domain::Consumer;
use stockroom_http_kit::metric_names;

use crate::prometheus::Sample;

/// The webhook deliveries as the snapshot carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPanel {
    /// Whether any data-service instance sends webhooks: without a URL
    /// configured, every other figure is meaningless.
    pub configured: bool,
    /// The URLs each event goes to.
    pub receivers: u64,
    /// Events every receiver took, since the instances started.
    pub sent: u64,
    /// Attempts that failed and were scheduled again.
    pub retrying: u64,
    /// Events given up on after the last attempt: dead-lettered.
    pub dead: u64,
    /// Events waiting in the outbox to be sent (or sent again).
    pub waiting: u64,
    /// Dead letters waiting for an operator to redrive them.
    pub dead_letters: u64,
    /// An instance whose metrics could not be read.
    pub error: Option<String>,
}

impl WebhookPanel {
    /// The panel from every data-service instance's metrics, or the line
    /// its read failed with. A failed read arrives already rendered (the
    /// source's error and its causes on one line, as the page shows it):
    /// the panel only displays it, so it needs no error type.
    pub fn from_instances(readings: &[Result<Vec<Sample>, String>]) -> WebhookPanel {
        let mut panel = WebhookPanel::default();
        let webhooks = Consumer::Webhooks.as_str();
        for reading in readings {
            let samples = match reading {
                Ok(samples) => samples,
                Err(error) => {
                    panel.error = Some(error.clone());
                    continue;
                }
            };
            for sample in samples {
                let value = whole(sample.value);
                match sample.name.as_str() {
                    metric_names::WEBHOOK_RECEIVERS => panel.receivers = panel.receivers.max(value),
                    metric_names::WEBHOOK_DELIVERIES_TOTAL => match sample.label("outcome") {
                        Some("sent") => panel.sent += value,
                        Some("retrying") => panel.retrying += value,
                        Some("dead") => panel.dead += value,
                        _ => {}
                    },
                    metric_names::OUTBOX_PENDING if sample.label("consumer") == Some(webhooks) => {
                        panel.waiting = panel.waiting.max(value);
                    }
                    metric_names::DEAD_LETTERS if sample.label("consumer") == Some(webhooks) => {
                        panel.dead_letters = panel.dead_letters.max(value);
                    }
                    _ => {}
                }
            }
        }
        panel.configured = panel.receivers > 0;
        panel
    }
}

/// A counter's or gauge's value as a count (a negative or odd value, which
/// no such metric has, counts as none).
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus;

    #[test]
    fn deliveries_add_up_across_instances_and_the_outbox_is_counted_once() {
        let instance = |sent: u64| {
            Ok(prometheus::parse(&format!(
                "stockroom_webhook_receivers 2\n\
                 stockroom_webhook_deliveries_total{{outcome=\"sent\"}} {sent}\n\
                 stockroom_webhook_deliveries_total{{outcome=\"retrying\"}} 3\n\
                 stockroom_webhook_deliveries_total{{outcome=\"dead\"}} 1\n\
                 stockroom_outbox_pending{{consumer=\"webhooks\"}} 4\n\
                 stockroom_outbox_pending{{consumer=\"payment\"}} 90\n\
                 stockroom_dead_letters{{consumer=\"webhooks\"}} 1\n\
                 stockroom_dead_letters{{consumer=\"payment\"}} 7\n"
            )))
        };
        let panel = WebhookPanel::from_instances(&[instance(10), instance(5)]);
        assert_eq!(
            panel,
            WebhookPanel {
                configured: true,
                receivers: 2,
                sent: 15,
                retrying: 6,
                dead: 2,
                waiting: 4,
                dead_letters: 1,
                error: None,
            }
        );
    }

    #[test]
    fn without_a_receiver_webhooks_are_not_configured() {
        let samples = prometheus::parse("stockroom_outbox_pending{consumer=\"webhooks\"} 0\n");
        let panel = WebhookPanel::from_instances(&[Ok(samples), Err("d: timed out".into())]);
        assert!(!panel.configured);
        assert_eq!(panel.error.as_deref(), Some("d: timed out"));
    }
}
