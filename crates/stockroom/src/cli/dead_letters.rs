//! `stockroom dead-letters list|redrive`: the events consumers refused as
//! poison, kept by data-service whatever the bus, and putting them back in
//! line once their cause is fixed. A redriven event still has at most one
//! effect: the order's state tells an event that took effect from one that
//! did not.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use stockroom_contract::DeadLetterList;
use stockroom_domain::Consumer;
use stockroom_http_kit::ServiceClient;
use stockroom_operator::dead_letters;

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
            let letters = dead_letters::list(&data, &args.consumers(), *limit).await?;
            if *json {
                let list = DeadLetterList {
                    dead_letters: letters,
                };
                println!("{}", serde_json::to_string(&list)?);
            } else {
                println!("{}", dead_letters::render(&letters));
            }
        }
        Action::Redrive { all, id } => {
            let mut redriven = 0;
            for consumer in args.consumers() {
                redriven += if *all {
                    dead_letters::redrive_all(&data, consumer).await?
                } else {
                    dead_letters::redrive(&data, consumer, id).await?
                };
            }
            println!("redriven: {redriven}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
