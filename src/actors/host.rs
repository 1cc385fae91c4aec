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
    /// The newest registry the follower applied and the registry actor has not taken
    /// yet: one slot, so however fast the follower reads, the actor's mailbox holds at
    /// most one wake-up and the newest registry is never dropped.
    pub followed: Arc<parking_lot::Mutex<Option<Registry>>>,
    /// Unfinished import jobs of the partitions installed here, for the import resumer.
    pub resumes: crate::cluster::imports::Resumes,
    /// The brand partitions installed here and their logs, for the search indexer.
    pub installed: Installed,
}

/// The brand partitions installed on this node, by partition: what the search indexer
/// covers (`index::indexer::Followed::Partitions`). A partition is added once its shard
/// has it (its documents marked for indexing) and taken out before it is removed.
pub type Installed = Arc<parking_lot::Mutex<std::collections::BTreeMap<u32, LogRef>>>;

impl ActorHost {
    pub fn new(router: Router) -> ActorHost {
        ActorHost { router, followed: Arc::default(), resumes: Default::default(), installed: Installed::default() }
    }
}

impl Host for ActorHost {
    fn install(&self, partition: PartitionId, state: State, log: ReplicatedJournal) -> BoxFuture<'static, ()> {
        let (router, resumes, installed) = (self.router.clone(), self.resumes.clone(), self.installed.clone());
        let log: LogRef = Arc::new(log);
        Box::pin(async move {
            let sent = match partition {
                PartitionId::Brand(p) => {
                    let jobs = crate::integration::pending_imports(&state.brands);
                    let sent =
                        router.shard_of_partition(p).send(InstallPartition { partition: p, brands: state.brands, log: log.clone() }).await;
                    if sent.is_ok() {
                        installed.lock().insert(p, log);
                        // Once the partition serves: the runner's first command must find it.
                        resumes.push(jobs);
                    }
                    sent
                }
                PartitionId::Registry => router.registry.send(InstallRegistry { registry: state.registry, log }).await,
            };
            if sent.is_err() {
                tracing::error!(partition = %partition, "an actor stopped before its partition could be installed");
            }
        })
    }

    fn remove(&self, partition: PartitionId) -> BoxFuture<'static, ()> {
        let (router, installed) = (self.router.clone(), self.installed.clone());
        Box::pin(async move {
            let _ = match partition {
                PartitionId::Brand(p) => {
                    installed.lock().remove(&p);
                    router.shard_of_partition(p).send(RemovePartition { partition: p }).await
                }
                PartitionId::Registry => router.registry.send(RemoveRegistry).await,
            };
        })
    }

    fn registry_followed(&self, registry: &Registry) {
        // The registry is small (locations, tokens); a copy per applied entry is cheap.
        let wake = self.followed.lock().replace(registry.clone()).is_none();
        if wake {
            // Past the mailbox's bound on purpose: at most one wake-up is ever queued.
            self.router.registry.do_send(Followed(self.followed.clone()));
        }
    }
}
