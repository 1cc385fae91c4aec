//! Cluster mode's serving side: the node controller (`cluster::node`) installs and
//! removes partitions through this, and feeds it the registry as followed.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::registry::{Followed, InstallRegistry, RemoveRegistry};
use super::shard::{InstallPartition, RemovePartition};
use super::Router;
use crate::cluster::engine::PartitionId;
use crate::cluster::node::Host;
use crate::cluster::plog::ReplicatedJournal;
use crate::domain::registry::Registry;
use crate::journal::LogRef;
use crate::state::State;

/// The actors of one node, as the cluster controller sees them.
pub struct ActorHost {
    pub router: Router,
}

impl Host for ActorHost {
    fn install(&self, partition: PartitionId, state: State, log: ReplicatedJournal) -> BoxFuture<'static, ()> {
        let router = self.router.clone();
        let log: LogRef = Arc::new(log);
        Box::pin(async move {
            let sent = match partition {
                PartitionId::Brand(p) => {
                    router.shard_of_partition(p).send(InstallPartition { partition: p, brands: state.brands, log }).await
                }
                PartitionId::Registry => router.registry.send(InstallRegistry { registry: state.registry, log }).await,
            };
            if sent.is_err() {
                tracing::error!(partition = %partition, "an actor stopped before its partition could be installed");
            }
        })
    }

    fn remove(&self, partition: PartitionId) -> BoxFuture<'static, ()> {
        let router = self.router.clone();
        Box::pin(async move {
            let _ = match partition {
                PartitionId::Brand(p) => router.shard_of_partition(p).send(RemovePartition { partition: p }).await,
                PartitionId::Registry => router.registry.send(RemoveRegistry).await,
            };
        })
    }

    fn registry_followed(&self, registry: &Registry) {
        // The registry is small (locations, tokens); a copy per applied entry is cheap.
        if self.router.registry.try_send(Followed(registry.clone())).is_err() {
            tracing::warn!("the registry actor's mailbox is full; the followed registry arrives with the next entry");
        }
    }
}
