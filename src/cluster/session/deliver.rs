//! The leader's record of its alerts, written before they are sent and again once they are
//! delivered; and this instance's own alerts of a time cut off from etcd (`alone/<id>`).
//!
//! The record is written in a transaction that holds only while the leader key is this
//! instance's on this session's lease: a leader that lost the key (or its lease) writes
//! nothing and sends nothing, and the new leader tells those changes.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, KvClient, PutOptions, Txn, TxnOp};
use tokio::sync::{mpsc, watch};

use super::Session;
use crate::base::alert::{Alert, Alerts};
use crate::cluster::{Alerted, Alone, Record};

/// Delivered ids kept to skip when a record is handed over again.
const DONE_KEPT: usize = 1024;

/// The engine's records and what it alerted alone; the alerts this instance, as leader,
/// recorded and has yet to see delivered.
pub(in crate::cluster) struct Outbox {
    pub(super) records_rx: mpsc::UnboundedReceiver<Record>,
    pub(super) alone_rx: watch::Receiver<Alone>,
    /// The state last handed over by the engine.
    state: Option<Alerted>,
    /// The override changes taken into the state and not yet deleted from etcd.
    taken: Vec<String>,
    /// Recorded and not yet delivered, in order.
    pending: Vec<Alert>,
    /// Those of `pending` handed to the delivery task.
    handed: HashSet<String>,
    /// The latest delivered ids.
    done: VecDeque<String>,
    sink: Option<Alerts>,
    delivered_tx: mpsc::UnboundedSender<String>,
    pub(super) delivered_rx: mpsc::UnboundedReceiver<String>,
    /// A pause between recording and sending (`GTMD_TEST_ALERT_PAUSE`, for tests).
    pause: Option<Duration>,
}

impl Outbox {
    pub fn new(
        records_rx: mpsc::UnboundedReceiver<Record>,
        alone_rx: watch::Receiver<Alone>,
    ) -> Self {
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        let pause = std::env::var("GTMD_TEST_ALERT_PAUSE")
            .ok()
            .and_then(|p| humantime::parse_duration(&p).ok());
        Outbox {
            records_rx,
            alone_rx,
            state: None,
            taken: Vec::new(),
            pending: Vec::new(),
            handed: HashSet::new(),
            done: VecDeque::new(),
            sink: None,
            delivered_tx,
            delivered_rx,
            pause,
        }
    }

    /// Forgets what is pending: another instance leads (it tells these changes).
    fn drop_all(&mut self) {
        if !self.pending.is_empty() {
            tracing::warn!(
                alerts = self.pending.len(),
                "cluster: no longer the leader; the new leader sends the alerts not delivered"
            );
        }
        self.forget();
    }

    /// Forgets the state and alerts of an earlier leadership: a leadership taken anew
    /// starts from etcd's record (the engine hands it over), never from a state that
    /// another leader's record may have overtaken since. The engine's records still queued
    /// predate this session's join (the engine learns of it only once the session is open)
    /// and go too.
    pub(in crate::cluster) fn forget(&mut self) {
        while self.records_rx.try_recv().is_ok() {}
        self.state = None;
        self.taken.clear();
        self.pending.clear();
        self.handed.clear();
    }
}

impl Session {
    /// Takes the engine's record: written at once, its alerts sent once etcd holds it.
    pub(super) async fn take_record(
        &mut self,
        kv: &mut KvClient,
        lease: i64,
        r: Record,
    ) -> Result<(), String> {
        let o = &mut self.outbox;
        o.sink = Some(r.sink);
        for a in r.alerts {
            if !o.done.contains(&a.id) && !o.pending.iter().any(|p| p.id == a.id) {
                o.pending.push(a);
            }
        }
        o.state = Some(r.state);
        o.taken.extend(r.taken);
        self.write_record(kv, lease).await
    }

    /// An alert was delivered: the record is written without it (with any others
    /// delivered meanwhile).
    pub(super) async fn delivered(
        &mut self,
        kv: &mut KvClient,
        lease: i64,
        id: String,
    ) -> Result<(), String> {
        let mut ids = vec![id];
        while let Ok(id) = self.outbox.delivered_rx.try_recv() {
            ids.push(id);
        }
        let o = &mut self.outbox;
        for id in ids {
            o.pending.retain(|a| a.id != id);
            o.handed.remove(&id);
            if o.done.len() == DONE_KEPT {
                o.done.pop_front();
            }
            o.done.push_back(id);
        }
        self.write_record(kv, lease).await
    }

    /// Writes the record (state and pending alerts) while this instance leads on `lease`,
    /// then sends the pending alerts not sent yet.
    pub(super) async fn write_record(
        &mut self,
        kv: &mut KvClient,
        lease: i64,
    ) -> Result<(), String> {
        let Some(state) = self.outbox.state.clone() else {
            return Ok(());
        };
        let leads = self.state.leader.as_deref() == Some(self.keys.me.as_str());
        let record = Alerted {
            pending: self.outbox.pending.clone(),
            ..state
        };
        let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let leader = self.keys.leader();
        let mut ops = vec![TxnOp::put(self.keys.alerted(), body, None)];
        let taken = &self.outbox.taken;
        ops.extend(
            taken
                .iter()
                .map(|id| TxnOp::delete(self.keys.change(id), None)),
        );
        let t = Txn::new()
            .when([
                Compare::value(leader.clone(), CompareOp::Equal, self.keys.me.clone()),
                Compare::lease(leader, CompareOp::Equal, lease),
            ])
            .and_then(ops);
        if !leads || !self.op("record alerts", kv.txn(t)).await?.succeeded() {
            self.outbox.drop_all();
            return Ok(());
        }
        crate::base::metrics::cluster_writes("alerted", 1);
        self.outbox.taken.clear();
        self.hand_over();
        Ok(())
    }

    /// Sends the recorded alerts not sent yet (after the test pause, if any).
    fn hand_over(&mut self) {
        let o = &mut self.outbox;
        let Some(sink) = o.sink.clone() else { return };
        let fresh: Vec<Alert> = o
            .pending
            .iter()
            .filter(|a| !o.handed.contains(&a.id))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return;
        }
        o.handed.extend(fresh.iter().map(|a| a.id.clone()));
        let (tx, pause) = (o.delivered_tx.clone(), o.pause);
        tokio::spawn(async move {
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
            for a in fresh {
                sink.send_then(a, Some(tx.clone()));
            }
        });
    }

    /// Writes (or removes, when empty) the member states this instance alerted on its own,
    /// on `lease`.
    pub(super) async fn write_alone(
        &mut self,
        kv: &mut KvClient,
        lease: i64,
    ) -> Result<(), String> {
        let alone = self.outbox.alone_rx.borrow_and_update().clone();
        let key = self.keys.alone();
        if alone.is_empty() {
            self.op("clear alone", kv.delete(key, None)).await?;
            return Ok(());
        }
        let body = serde_json::to_vec(&alone).map_err(|e| e.to_string())?;
        let put = PutOptions::new().with_lease(lease);
        self.op("write alone", kv.put(key, body, Some(put))).await?;
        crate::base::metrics::cluster_writes("alone", 1);
        Ok(())
    }
}
