//! The race lab's launcher: the fixed system started in this process, on
//! ephemeral ports, for `stockroom lab`, the dashboard's lab control and the
//! lab's tests.

use stockroom_lab::{FixedLauncher, FixedRunning, FixedSpec, SystemUrls};

use crate::system::{self, Ports, RunningSystem, SystemConfig};

/// Starts the fixed system in this process for the lab, with
/// [`system::start`] on ephemeral ports.
pub struct InProcessLauncher;

struct InProcessSystem(RunningSystem);

#[async_trait::async_trait]
impl FixedRunning for InProcessSystem {
    fn urls(&self) -> SystemUrls {
        let urls = &self.0.urls;
        SystemUrls {
            order: urls.order.clone(),
            data: urls.data.clone(),
            inventory: urls.inventory.clone(),
            payment: urls.payment.clone(),
            internal_token: Some(self.0.internal_token.expose().to_owned()),
        }
    }

    async fn stop(self: Box<Self>) -> Result<(), stockroom_lab::LaunchError> {
        self.0.stop().await.map_err(Into::into)
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
        let running = system::start(config).await?;
        Ok(Box::new(InProcessSystem(running)))
    }
}
