//! One naive service alone, for `stockroom serve <service> --mode naive`:
//! the original system as four processes, with no proposed fix (a fix needs
//! the four services together, as `stockroom up --mode naive` runs them).

use std::future::Future;
use std::path::PathBuf;

use stockroom_contract::StockLine;
use tokio::net::TcpListener;

use crate::{Fix, NaiveError, NaiveFlow, RaceWindows};

/// Which service, and what it needs to know.
#[derive(Debug, Clone)]
pub enum OneService {
    Order {
        data_url: String,
        inventory_url: String,
    },
    /// data-service over the files in `data_dir`, filled with `stock` when
    /// `fresh` or when they do not exist.
    Data {
        data_dir: PathBuf,
        stock: Vec<StockLine>,
        fresh: bool,
    },
    Inventory {
        data_url: String,
        payment_url: String,
        flow: NaiveFlow,
    },
    Payment,
}

impl OneService {
    /// The service's name, as its logs and errors say it.
    pub fn name(&self) -> &'static str {
        match self {
            OneService::Order { .. } => "naive order-service",
            OneService::Data { .. } => "naive data-service",
            OneService::Inventory { .. } => "naive inventory-service",
            OneService::Payment => "naive payment-service",
        }
    }
}

/// Serves `service` on `listener` with the race `windows` until `shutdown`.
pub async fn serve_one(
    service: OneService,
    listener: TcpListener,
    windows: RaceWindows,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NaiveError> {
    let name = service.name();
    let served = match service {
        OneService::Order {
            data_url,
            inventory_url,
        } => {
            let config = crate::order::OrderConfig {
                data_url,
                inventory_url,
                windows,
                fix: Fix::None,
                dedupe: None,
                crash_after_publish: false,
            };
            crate::order::run(listener, config, shutdown).await
        }
        OneService::Data {
            data_dir,
            stock,
            fresh,
        } => {
            let files = crate::files::JsonFiles::new(&data_dir, windows.torn_write_ms);
            let state = crate::data::DataState::new(files, windows, Fix::None);
            state.store().initialize(&stock, fresh).await?;
            crate::data::run(listener, state, shutdown).await
        }
        OneService::Inventory {
            data_url,
            payment_url,
            flow,
        } => {
            let config = crate::inventory::InventoryConfig {
                data_url,
                payment_url,
                flow,
                windows,
                fix: Fix::None,
                locks: None,
            };
            crate::inventory::run(listener, config, shutdown).await
        }
        OneService::Payment => {
            let state = crate::payment::PaymentState::new(windows.payment_ms);
            crate::payment::run(listener, state, shutdown).await
        }
    };
    served.map_err(|source| NaiveError::Io {
        file: name.to_owned(),
        source,
    })
}
