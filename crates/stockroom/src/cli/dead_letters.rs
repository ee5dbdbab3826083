//! `stockroom dead-letters list|redrive`: the events consumers refused as
//! poison, kept by data-service whatever the bus, and putting them back in
//! line once their cause is fixed. A redriven event still has at most one
//! effect: the consumers' state checks and processed-event records see to it.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use stockroom_contract::{DeadLetterList, RedriveRequest, RedriveResult};
use stockroom_domain::Consumer;
use stockroom_http_kit::ServiceClient;

/// The most dead letters read or redriven per request (data-service's limit).
const PAGE: u32 = 1_000;

/// The most pages `redrive --all` goes through in one run, so that a
/// consumer refusing events as fast as they come back cannot keep it busy
/// forever.
const MAX_REDRIVE_PAGES: u32 = 10_000;

#[derive(Debug, Args)]
pub(super) struct DeadLetterArgs {
    #[command(subcommand)]
    action: Action,
    /// data-service's base URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:3002",
        env = "STOCKROOM_DATA_URL"
    )]
    data_url: String,
    /// Only this consumer's dead letters (default: every consumer's).
    #[arg(long, global = true, value_enum)]
    consumer: Option<ConsumerArg>,
    /// The system's internal token: dead letters are behind it.
    #[command(flatten)]
    token: super::args::TokenArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print the dead letters, oldest first.
    List {
        /// At most this many per consumer.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in line: every one (--all) or those named (--id).
    Redrive {
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        all: bool,
        /// A dead letter's delivery id, as `list` prints it (repeatable).
        #[arg(long)]
        id: Vec<i64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConsumerArg {
    Payment,
    Inventory,
    Webhooks,
}

impl DeadLetterArgs {
    fn consumers(&self) -> Vec<Consumer> {
        match self.consumer {
            Some(ConsumerArg::Payment) => vec![Consumer::Payment],
            Some(ConsumerArg::Inventory) => vec![Consumer::Inventory],
            Some(ConsumerArg::Webhooks) => vec![Consumer::Webhooks],
            None => Consumer::ALL.to_vec(),
        }
    }
}

pub(super) async fn dead_letters(args: DeadLetterArgs) -> anyhow::Result<ExitCode> {
    let data =
        ServiceClient::new("data-service", &args.data_url).with_token(args.token.required()?);
    match &args.action {
        Action::List { limit, json } => {
            let mut all = Vec::new();
            for consumer in args.consumers() {
                let page: DeadLetterList = data
                    .get_query(
                        &format!("/events/{consumer}/dead-letters"),
                        &[("limit", (*limit).clamp(1, PAGE))],
                    )
                    .await?;
                all.extend(page.dead_letters);
            }
            if *json {
                println!(
                    "{}",
                    serde_json::to_string(&DeadLetterList { dead_letters: all })?
                );
            } else if all.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>12}  {:<9}  {:<16}  {:<36}  {:>10}  dead since",
                    "delivery id", "consumer", "event", "order", "deliveries"
                );
                for letter in &all {
                    println!(
                        "{:>12}  {:<9}  {:<16}  {:<36}  {:>10}  {}",
                        letter.delivery_id,
                        letter.consumer,
                        letter.event.kind.as_str(),
                        letter.event.order_id,
                        letter.deliveries,
                        letter.dead_at
                    );
                }
            }
        }
        Action::Redrive { all, id } => {
            let mut redriven = 0;
            for consumer in args.consumers() {
                if !*all {
                    for chunk in id.chunks(PAGE as usize) {
                        redriven += redrive(&data, consumer, chunk).await?;
                    }
                    continue;
                }
                // Page after page: a redriven letter leaves the list, so the
                // next page holds the next ones, until none is left.
                for _ in 0..MAX_REDRIVE_PAGES {
                    let page: DeadLetterList = data
                        .get_query(
                            &format!("/events/{consumer}/dead-letters"),
                            &[("limit", PAGE)],
                        )
                        .await?;
                    let ids: Vec<i64> = page
                        .dead_letters
                        .iter()
                        .map(|letter| letter.delivery_id)
                        .collect();
                    if ids.is_empty() {
                        break;
                    }
                    redriven += redrive(&data, consumer, &ids).await?;
                }
            }
            println!("redriven: {redriven}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn redrive(data: &ServiceClient, consumer: Consumer, ids: &[i64]) -> anyhow::Result<u64> {
    let result: RedriveResult = data
        .post(
            &format!("/events/{consumer}/redrive"),
            &RedriveRequest {
                delivery_ids: ids.to_vec(),
            },
        )
        .await?;
    Ok(result.redriven)
}
