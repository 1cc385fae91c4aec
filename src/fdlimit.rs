//! The file-descriptor budget: how many connections the server may hold open, from
//! its limit on open files (`RLIMIT_NOFILE`).
//!
//! Every accepted connection holds a descriptor, and so does everything else the
//! server opens: journal segments (the writer's, the preparer's next one, the feed's
//! reader, snapshot builds), the SQLite files of the feed and of webhook delivery
//! (each connection with its `-wal` and `-shm`; the feed's readers on the blocking
//! pool), the search index's segment files while it commits and merges, import uploads
//! being written, outbound webhook connections, and the runtimes' own epoll and event
//! descriptors. If connections could take them all, anyone could stop the server's
//! background work without a token: idle keep-alive connections to `/healthz` up to
//! the limit leave the indexer and the feed with `EMFILE`.
//!
//! So at start the soft limit is raised to the hard one ([`raise_open_files_limit`]),
//! and connections are capped at the limit less a reserve ([`connection_cap`]):
//! [`FDS_RESERVED`] for files, plus one per webhook attempt in flight and per upload.
//! Past the cap the server stops accepting; new connections wait in the listen
//! backlog (and past that are refused by the kernel) until one closes.

/// Descriptors kept for everything but connections and outbound webhook attempts: an
/// idle server holds under 100; the rest is room for SQLite readers, index commits and
/// merges, snapshot builds and journal segments at once.
pub const FDS_RESERVED: u64 = 1024;
/// Connections per HTTP worker at most, however many descriptors there are.
pub const CONNECTIONS_PER_WORKER_MAX: usize = 10_000;
/// Fewest connections worth starting with: below it the server refuses to start and
/// says which limit to raise.
pub const CONNECTIONS_MIN: usize = 64;
/// What an unlimited hard limit is raised to (Linux refuses more than `fs.nr_open`,
/// 1,048,576 by default).
const UNLIMITED_AS: u64 = 1 << 20;

/// The limit on open files after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit in force: what counts.
    pub limit: u64,
    /// The soft limit before it was raised, if it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one (a process may do that without
/// privileges) and returns what is in force. A refusal keeps the old limit (logged).
pub fn raise_open_files_limit() -> OpenFiles {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let old = getrlimit(Resource::Nofile);
    let soft = old.current.unwrap_or(UNLIMITED_AS);
    let hard = old.maximum.unwrap_or(UNLIMITED_AS);
    if soft >= hard {
        return OpenFiles { limit: soft, raised_from: None };
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: old.maximum }) {
        Ok(()) => OpenFiles { limit: hard, raised_from: Some(soft) },
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit to its hard limit; keeping the soft one");
            OpenFiles { limit: soft, raised_from: None }
        }
    }
}

/// The connection bound: over all workers, and per worker (actix-web counts per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCap {
    /// `per_worker × workers`.
    pub total: usize,
    pub per_worker: usize,
    /// A configured `--max-connections` that the open-file limit does not allow.
    pub lowered_from: Option<usize>,
}

/// The connection bound for an open-file limit of `open_files` with `reserved`
/// descriptors kept for everything else: `--max-connections` if given (lowered to what
/// the limit allows, not refused, so one configuration runs on hosts with different
/// limits), else what the limit allows, at most [`CONNECTIONS_PER_WORKER_MAX`] per
/// worker. Refuses (with what to raise) when fewer than [`CONNECTIONS_MIN`] fit.
pub fn connection_cap(open_files: u64, reserved: u64, configured: Option<usize>, workers: usize) -> Result<ConnectionCap, String> {
    let workers = workers.max(1);
    let budget = usize::try_from(open_files.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if budget < CONNECTIONS_MIN.max(workers) {
        return Err(format!(
            "the open-file limit (RLIMIT_NOFILE) is {open_files}, which leaves fewer than {} connections after the {reserved} descriptors \
             kept for files; raise it to at least {} (`ulimit -n`, or `LimitNOFILE=` in a systemd unit)",
            CONNECTIONS_MIN.max(workers),
            reserved + CONNECTIONS_MIN.max(workers) as u64
        ));
    }
    let (wanted, lowered_from) = match configured {
        Some(c) if c > budget => (budget, Some(c)),
        Some(c) => (c, None),
        None => (budget.min(CONNECTIONS_PER_WORKER_MAX.saturating_mul(workers)), None),
    };
    let per_worker = (wanted / workers).max(1);
    Ok(ConnectionCap { total: per_worker * workers, per_worker, lowered_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_the_reserve_free() {
        // The defect: 20,000 files and 2 workers of 10,000 connections each.
        let cap = connection_cap(20_000, 1100, None, 2).unwrap();
        assert_eq!(cap, ConnectionCap { total: 18_900, per_worker: 9450, lowered_from: None });
        assert!(cap.total as u64 + 1100 <= 20_000);
        // A large limit: the per-worker bound.
        assert_eq!(connection_cap(1 << 20, 1100, None, 4).unwrap().total, 40_000);
        // Rounded down to a multiple of the workers, never above the budget.
        let cap = connection_cap(2000, 1100, None, 7).unwrap();
        assert_eq!((cap.per_worker, cap.total), (128, 896));
    }

    #[test]
    fn a_configured_cap_above_the_limit_is_lowered() {
        let cap = connection_cap(3000, 1100, Some(5000), 2).unwrap();
        assert_eq!(cap, ConnectionCap { total: 1900, per_worker: 950, lowered_from: Some(5000) });
        let cap = connection_cap(3000, 1100, Some(100), 2).unwrap();
        assert_eq!(cap, ConnectionCap { total: 100, per_worker: 50, lowered_from: None });
    }

    #[test]
    fn too_low_a_limit_is_refused_with_what_to_raise() {
        let e = connection_cap(1024, 1100, None, 2).unwrap_err();
        assert!(e.contains("raise it to at least 1164"), "{e}");
        assert!(connection_cap(1100 + CONNECTIONS_MIN as u64, 1100, None, 2).is_ok());
    }
}
