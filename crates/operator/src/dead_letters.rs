//! The dead letters: the events consumers refused as poison, which
//! data-service keeps whatever the bus, listed and put back in line once
//! their cause is fixed. A redriven event still has at most one effect: the
//! order's state tells an event that took effect from one that did not. These
//! are internal routes: the client carries the internal token.

use stockroom_contract::{DeadLetter, DeadLetterList, RedriveRequest, RedriveResult};
use stockroom_domain::Consumer;
use stockroom_http_kit::{ClientError, ServiceClient};

/// The most dead letters read or redriven per request (data-service's limit).
pub const DEAD_LETTER_PAGE: u32 = 1_000;

/// The most pages [`redrive_all`] goes through in one call, so that a
/// consumer refusing events as fast as they come back cannot keep it busy
/// forever.
pub const MAX_REDRIVE_PAGES: u32 = 10_000;

/// Up to `limit` dead letters of each of `consumers`.
pub async fn list(
    data: &ServiceClient,
    consumers: &[Consumer],
    limit: u32,
) -> Result<Vec<DeadLetter>, ClientError> {
    let mut all = Vec::new();
    for consumer in consumers {
        let page: DeadLetterList = data
            .get_query(
                &format!("/events/{consumer}/dead-letters"),
                &[("limit", limit.clamp(1, DEAD_LETTER_PAGE))],
            )
            .await?;
        all.extend(page.dead_letters);
    }
    Ok(all)
}

/// Puts the dead letters `ids` of `consumer` back in line; answers how many
/// were.
pub async fn redrive(
    data: &ServiceClient,
    consumer: Consumer,
    ids: &[i64],
) -> Result<u64, ClientError> {
    let mut redriven = 0;
    for chunk in ids.chunks(DEAD_LETTER_PAGE as usize) {
        let result: RedriveResult = data
            .post(
                &format!("/events/{consumer}/redrive"),
                &RedriveRequest {
                    delivery_ids: chunk.to_vec(),
                },
            )
            .await?;
        redriven += result.redriven;
    }
    Ok(redriven)
}

/// Puts every dead letter of `consumer` back in line, page after page: a
/// redriven letter leaves the list, so the next page holds the next ones,
/// until none is left (or [`MAX_REDRIVE_PAGES`] passed).
pub async fn redrive_all(data: &ServiceClient, consumer: Consumer) -> Result<u64, ClientError> {
    let mut redriven = 0;
    for _ in 0..MAX_REDRIVE_PAGES {
        let ids: Vec<i64> = list(data, &[consumer], DEAD_LETTER_PAGE)
            .await?
            .iter()
            .map(|letter| letter.delivery_id)
            .collect();
        if ids.is_empty() {
            break;
        }
        redriven += redrive(data, consumer, &ids).await?;
    }
    Ok(redriven)
}

/// The dead letters as a table a person reads.
pub fn render(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters".to_owned();
    }
    let mut lines = vec![format!(
        "{:>12}  {:<9}  {:<16}  {:<36}  {:>10}  dead since",
        "delivery id", "consumer", "event", "order", "deliveries"
    )];
    lines.extend(letters.iter().map(|letter| {
        format!(
            "{:>12}  {:<9}  {:<16}  {:<36}  {:>10}  {}",
            letter.delivery_id,
            letter.consumer,
            letter.event.kind.as_str(),
            letter.event.order_id,
            letter.deliveries,
            letter.dead_at
        )
    }));
    lines.join("\n")
}
