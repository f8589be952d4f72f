//! What each zone's secondaries were told and took: the last NOTIFY to each one and whether
//! it was answered, and the last transfer served to each client. Written by the NOTIFY
//! task and by transfers (never by ordinary queries), read by `/status`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use serde::Serialize;

/// Clients remembered per zone at most (the oldest is forgotten first).
const MAX_CLIENTS: usize = 64;

/// The last NOTIFY of one zone to one secondary.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyState {
    pub serial: u32,
    /// Attempts for this serial so far.
    pub attempts: u32,
    /// Whether the secondary answered (NOERROR).
    pub answered: bool,
    /// Seconds since the Unix epoch of the last attempt.
    pub at: u64,
    /// Why the last attempt failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last transfer served to one client.
#[derive(Debug, Clone, Serialize)]
pub struct TransferState {
    pub serial: u32,
    /// `AXFR`, `IXFR` (differences), `IXFR-AXFR` (a whole zone in answer to IXFR) or
    /// `IXFR-current` (the client was up to date).
    pub kind: &'static str,
    pub messages: usize,
    pub bytes: usize,
    /// From the request to the last message written.
    pub duration_ms: f64,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// One zone's secondaries, as `/status` shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZoneSecondaries {
    pub notify: BTreeMap<SocketAddr, NotifyState>,
    pub transfers: BTreeMap<IpAddr, TransferState>,
}

/// Every zone's, by origin.
#[derive(Debug, Default)]
pub struct Log {
    zones: Mutex<BTreeMap<String, ZoneSecondaries>>,
}

impl Log {
    pub fn notified(&self, zone: &str, to: SocketAddr, state: NotifyState) {
        if let Ok(mut z) = self.zones.lock() {
            z.entry(zone.to_string())
                .or_default()
                .notify
                .insert(to, state);
        }
    }

    pub fn transferred(&self, zone: &str, client: IpAddr, state: TransferState) {
        if let Ok(mut z) = self.zones.lock() {
            let t = &mut z.entry(zone.to_string()).or_default().transfers;
            if t.len() >= MAX_CLIENTS && !t.contains_key(&client) {
                if let Some(oldest) = t.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| *k) {
                    t.remove(&oldest);
                }
            }
            t.insert(client, state);
        }
    }

    pub fn get(&self) -> BTreeMap<String, ZoneSecondaries> {
        self.zones.lock().map(|z| z.clone()).unwrap_or_default()
    }
}
