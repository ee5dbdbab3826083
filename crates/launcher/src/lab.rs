//! The race lab's launcher: the fixed system started in this process, on
//! ephemeral ports, for `stockroom lab`, the dashboard's lab control and the
//! lab's tests.
//!
//! For the two-hosts scenario it starts a second host beside the first: an
//! order-, inventory- and payment-service of their own over the first host's
//! data-service, which stays the one owner of the database (SQLite admits
//! one data-service per data directory; on PostgreSQL several may share a
//! database, which `stockroom cluster` shows).

use stockroom_http_kit::OperatorToken;
use stockroom_inventory_service::InventoryConfig;
use stockroom_lab::{FixedLauncher, FixedRunning, FixedSpec, SystemUrls};
use stockroom_order_service::OrderConfig;
use stockroom_payment_service::PaymentConfig;

use crate::system::{
    self, Ports, RunningService, RunningSystem, SystemConfig, bind, inventory_service,
    order_service, payment_service,
};

/// Starts the fixed system in this process for the lab, with
/// [`system::start`] on ephemeral ports.
pub struct InProcessLauncher;

/// The services of one more host: they take orders and consume events,
/// and keep nothing of their own.
struct OtherHost {
    order_url: String,
    services: [RunningService; 3],
}

struct InProcessSystem {
    system: RunningSystem,
    other_hosts: Vec<OtherHost>,
    /// What the operator's routes require: the lab sets limits, adjusts
    /// stock and reads the ledger through them.
    operator_token: OperatorToken,
}

#[async_trait::async_trait]
impl FixedRunning for InProcessSystem {
    fn urls(&self) -> SystemUrls {
        let urls = &self.system.urls;
        SystemUrls {
            order: urls.order.clone(),
            data: urls.data.clone(),
            inventory: urls.inventory.clone(),
            payment: urls.payment.clone(),
            other_hosts_orders: self
                .other_hosts
                .iter()
                .map(|host| host.order_url.clone())
                .collect(),
            internal_token: Some(self.system.internal_token.expose().to_owned()),
            operator_token: Some(self.operator_token.expose().to_owned()),
        }
    }

    async fn stop(self: Box<Self>) -> Result<(), stockroom_lab::LaunchError> {
        for host in self.other_hosts {
            for service in host.services {
                service.stop().await?;
            }
        }
        self.system.stop().await.map_err(Into::into)
    }
}

#[async_trait::async_trait]
impl FixedLauncher for InProcessLauncher {
    async fn start(
        &self,
        spec: FixedSpec,
    ) -> Result<Box<dyn FixedRunning>, stockroom_lab::LaunchError> {
        let mut config = SystemConfig::new(&spec.data_dir);
        config.ports = Ports::EPHEMERAL;
        config.stock = Some(spec.stock);
        config.fresh = true;
        config.payment_latency_ms = spec.payment_latency_ms;
        let operator_token = OperatorToken::generate();
        config.operator_token = Some(operator_token.clone());
        let system = system::start(config.clone()).await?;
        let mut running = InProcessSystem {
            system,
            other_hosts: Vec::new(),
            operator_token,
        };
        for _ in 1..spec.hosts {
            match start_other_host(&config, &running.system).await {
                Ok(host) => running.other_hosts.push(host),
                Err(error) => {
                    let _ = Box::new(running).stop().await;
                    return Err(error.into());
                }
            }
        }
        Ok(Box::new(running))
    }
}

/// Starts an order-, inventory- and payment-service over `system`'s
/// data-service, configured as `system`'s own, and waits until they are
/// healthy.
async fn start_other_host(
    config: &SystemConfig,
    system: &RunningSystem,
) -> anyhow::Result<OtherHost> {
    let data_url = system.urls.data.clone();
    let token = system.internal_token.clone();
    let (inventory_listener, inventory_url) = bind("inventory-service", config.host, 0).await?;
    let (payment_listener, payment_url) = bind("payment-service", config.host, 0).await?;
    let (order_listener, order_url) = bind("order-service", config.host, 0).await?;
    let inventory = InventoryConfig {
        data_url: data_url.clone(),
        reservation_ttl_ms: config.reservation_ttl_ms,
        sweep_interval_ms: config.sweep_interval_ms,
        internal_token: token.clone(),
        operator_token: config.operator_token.clone(),
    };
    let payment = PaymentConfig {
        data_url: data_url.clone(),
        latency_ms: config.payment_latency_ms,
        decline_rate: config.payment_decline_rate,
        internal_token: token.clone(),
    };
    let order = OrderConfig {
        inventory_url: inventory_url.clone(),
        data_url,
        internal_token: token,
        max_reservation_ttl_ms: config.max_reservation_ttl_ms,
    };
    let host = OtherHost {
        order_url: order_url.clone(),
        services: [
            order_service(order_listener, order, config.order_coalescing),
            inventory_service(inventory_listener, inventory, &config.bus, config.lease_ms),
            payment_service(payment_listener, payment, &config.bus, config.lease_ms),
        ],
    };
    let client = stockroom_http_kit::direct_client().build()?;
    for (name, url) in [
        ("inventory-service", &inventory_url),
        ("payment-service", &payment_url),
        ("order-service", &order_url),
    ] {
        if let Err(error) = stockroom_http_kit::wait_for_health(&client, name, url).await {
            for service in host.services {
                let _ = service.stop().await;
            }
            return Err(error.into());
        }
    }
    Ok(host)
}
