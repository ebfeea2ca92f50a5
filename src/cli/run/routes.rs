//! How resources become the node's routes in `knactor run`. With --config they are read once at
//! start, then re-read on an interval by a thread of their own; in cluster mode the controller
//! builds them from the cluster's objects, with the same [`Routing`].

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use anyhow::Context as _;
use knactor_actors::actor::{ApplyRoutes, ApplySources, Node, SourceManager};
use knactor_actors::routes::{Catalog, ChannelDefaults, Delivery, Routes};
use tracing::{error, info, warn};
use url::Url;

use crate::config::ConfigSource;

/// What turns resources into routes, besides the resources.
#[derive(Clone)]
pub(super) struct Routing {
    /// This node's ingress URL: the address of the brokers it runs.
    pub advertise: Url,
    /// The channel of a broker whose resources name none.
    pub channels: ChannelDefaults,
    /// The delivery of brokers and triggers that give none, when the resources set no default.
    pub knative_default: Delivery,
}

impl Routing {
    /// Reads the configuration if it changed, says what was refused, and hands the node new routes.
    pub(super) fn apply(
        &self,
        source: &mut ConfigSource,
        node: &Addr<Node>,
        sources: &Addr<SourceManager>,
    ) -> anyhow::Result<()> {
        let Some(snapshot) = source.poll()? else {
            return Ok(());
        };
        for line in &snapshot.refused {
            error!("refused: {line}");
        }
        for line in &snapshot.warnings {
            warn!("{line}");
        }
        for line in &snapshot.kept {
            warn!("{line}");
        }
        let (catalog, duplicates) = Catalog::from_report(&snapshot.report);
        for refusal in duplicates {
            error!("refused: {refusal}");
        }
        let resolver = catalog.addressables(Some(self.advertise.clone()));
        let default_delivery = catalog
            .settings
            .default_delivery
            .clone()
            .unwrap_or_else(|| self.knative_default.clone());
        let routes = Routes::build(&catalog, &resolver, &self.channels, &default_delivery);
        info!(
            brokers = catalog.brokers.len(),
            triggers = catalog.triggers.len(),
            sources = routes.sources().len(),
            not_running = routes.issues().len(),
            "configuration loaded"
        );
        sources.do_send(ApplySources(routes.sources().to_vec()));
        node.do_send(ApplyRoutes(Arc::new(routes)));
        Ok(())
    }

    /// Re-reads the configuration every `every`, for the node's life. Reading files blocks (a slow
    /// disk, a hung mount): never on the thread the node's actor runs on. A failure is said once,
    /// not at every interval.
    pub(super) fn spawn_reloader(
        self,
        every: Duration,
        mut source: ConfigSource,
        node: Addr<Node>,
        sources: Addr<SourceManager>,
    ) -> anyhow::Result<()> {
        std::thread::Builder::new()
            .name("config-reload".into())
            .spawn(move || {
                let mut failing = None;
                loop {
                    std::thread::sleep(every);
                    match self.apply(&mut source, &node, &sources) {
                        Ok(()) => failing = None,
                        Err(failure) => {
                            let failure = format!("{failure:#}");
                            if failing.as_ref() != Some(&failure) {
                                error!("reloading the configuration failed, keeping what runs: {failure}");
                            }
                            failing = Some(failure);
                        }
                    }
                }
            })
            .context("cannot start the configuration reloader")?;
        Ok(())
    }
}
