//! The TTL observer: one `Registry/Watch` stream of [`SERVICE_TYPE`] from revision 1,
//! resumed on a random node from the last revision seen (events de-duplicated by
//! (revision, id)), and the linearizable read it catches up with at the end.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use muster::api::grpc::pb::registry::{
    registry_client::RegistryClient, ListRequest, WatchRequest, WatchResponse,
};
use rand::rngs::StdRng;
use rand::Rng;

use super::{FinalRead, TtlEvent, CATCH_UP, OP_SLACK, SERVICE_TYPE, STEP};
use crate::history::{code_name, RunClock};
use crate::watch::{poll, Kind, Polled, Record, WatchStop};
use crate::workload::{Targets, OP_TIMEOUT};

/// Upper bound on the observer's loop turns (messages, polls and reconnects).
const TURNS_MAX: usize = 200_000;

/// A linearizable List on random nodes until one answers or [`CATCH_UP`] has passed.
pub(super) async fn final_read(targets: &Targets, rng: &mut StdRng, clock: RunClock) -> Option<FinalRead> {
    let give_up_ns = clock.now_ns() + CATCH_UP.as_nanos() as u64;
    for _ in 0..CATCH_UP.as_millis() / STEP.as_millis() {
        if clock.now_ns() >= give_up_ns {
            break;
        }
        let n = rng.random_range(0..targets.channels.len());
        let read_ns = clock.now_ns();
        let mut req = tonic::Request::new(ListRequest {
            r#type: Some(SERVICE_TYPE.into()),
            limit: Some(1),
            ..Default::default()
        });
        req.set_timeout(OP_TIMEOUT);
        let mut c = RegistryClient::new(targets.channels[n].clone());
        if let Ok(Ok(r)) = tokio::time::timeout(OP_TIMEOUT + OP_SLACK, c.list(req)).await {
            return Some(FinalRead { read_ns, revision: r.into_inner().revision });
        }
        tokio::time::sleep(STEP).await;
    }
    None
}

/// What the observer saw.
pub(super) struct Observed {
    pub events: Vec<TtlEvent>,
    pub streams: Vec<Record>,
    /// The highest revision seen: a resume starts there.
    pub seen: u64,
    /// The highest revision whose events have all been delivered: a progress notification's,
    /// or one below an event's (later events may share that event's revision).
    pub through: u64,
}

fn event_of(at_ns: u64, m: &WatchResponse) -> Option<TtlEvent> {
    let e = m.event.as_ref()?;
    let s = e.service.as_ref();
    let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
    Some(TtlEvent {
        at_ns,
        revision: e.revision,
        kind: Kind::of(e.kind),
        id: s.map(|s| s.service_id.clone()).unwrap_or_default(),
        expires_at_ms: ms(s.map(|s| s.expires_at_ms)),
        last_heartbeat_ms: ms(s.map(|s| s.last_heartbeat_ms)),
        updated_at_ms: ms(s.map(|s| s.updated_at_ms)),
        ttl_seconds: s.map_or(0, |s| s.ttl_seconds),
    })
}

pub(super) async fn observe(
    targets: Targets,
    mut rng: StdRng,
    clock: RunClock,
    stop: Arc<WatchStop>,
) -> Observed {
    let mut out = Observed { events: Vec::new(), streams: Vec::new(), seen: 0, through: 0 };
    let mut delivered: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut stream: Option<tonic::Streaming<WatchResponse>> = None;
    let mut last_msg_ns = 0;
    for _ in 0..TURNS_MAX {
        let until = stop.until.load(Ordering::Relaxed);
        if stop.give_up.load(Ordering::Relaxed) || (until > 0 && out.through >= until) {
            break;
        }
        let Some(s) = stream.as_mut() else {
            let n = rng.random_range(0..targets.channels.len());
            // From the last revision seen: its other events may not all have arrived.
            let start = out.seen.max(1);
            let req = WatchRequest { start_revision: start, r#type: Some(SERVICE_TYPE.into()) };
            let mut c = RegistryClient::new(targets.channels[n].clone());
            let opened = tokio::time::timeout(OP_TIMEOUT, c.watch(req)).await;
            let at_ns = clock.now_ns();
            match opened {
                Ok(Ok(r)) => {
                    out.streams.push(Record::Open { at_ns, node: targets.names[n].clone(), start });
                    last_msg_ns = at_ns;
                    stream = Some(r.into_inner());
                }
                Ok(Err(st)) => {
                    let error = format!("Watch: {}: {}", code_name(st.code()), st.message());
                    out.streams.push(Record::Break { at_ns, error });
                    tokio::time::sleep(STEP).await;
                }
                Err(_) => {
                    let error = "Watch: no answer within the deadline".to_string();
                    out.streams.push(Record::Break { at_ns, error });
                }
            }
            continue;
        };
        let (at_ns, polled) = poll(s, clock, &mut last_msg_ns).await;
        let broken = match polled {
            Polled::Idle => None,
            Polled::Broken(error) => Some(error),
            Polled::Compacted(compacted) => {
                // The events through `compacted` are gone; the checker reports it.
                out.streams.push(Record::Compacted { at_ns, compacted });
                break;
            }
            Polled::Message(m) => {
                if let Some(e) = event_of(at_ns, &m) {
                    out.seen = out.seen.max(e.revision);
                    out.through = out.through.max(e.revision.saturating_sub(1));
                    if delivered.insert((e.revision, e.id.clone())) {
                        out.events.push(e);
                    }
                } else if m.progress {
                    out.seen = out.seen.max(m.revision);
                    out.through = out.through.max(m.revision);
                }
                None
            }
        };
        if let Some(error) = broken {
            out.streams.push(Record::Break { at_ns, error });
            stream = None;
            tokio::time::sleep(STEP).await;
        }
    }
    out
}
