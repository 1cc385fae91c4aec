//! `GET /healthz`: the ceiling of the server's HTTP stack (no auth, no actor, no WAL),
//! measured beside every other scenario at the same connection count.

use super::{Planned, Scenario, Worker};
use crate::client::write_request;
use crate::fixture::Fixture;
use crate::ledger::Effect;

pub struct Healthz;

impl Scenario for Healthz {
    fn name(&self) -> &'static str {
        "healthz"
    }

    fn writes(&self) -> bool {
        false
    }

    fn next(&self, fx: &Fixture, _w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        write_request(out, "GET", "/healthz", &fx.addr, &[], b"");
        Planned { label: "healthz", effect: Effect::None }
    }
}
