//! The alert leadership: taken when free or held by no live instance, kept across this
//! instance's own sessions (moved onto the new lease), learned otherwise.

use etcd_client::{Compare, CompareOp, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::Session;

impl Session {
    /// Takes the alert leadership if nobody holds it, or if the leader key names no live
    /// instance (a value no session holds is taken over); keeps it, on `lease`, if this
    /// instance holds it on an older lease of its own (a session that ended: the others
    /// would otherwise take it over when that lease is revoked, and send again what this
    /// instance delivered but could not yet mark); learns who leads otherwise.
    pub(super) async fn campaign(&mut self, kv: &mut KvClient, lease: i64) -> Result<(), String> {
        let key = self.keys.leader();
        let put = TxnOp::put(
            key.clone(),
            self.keys.me.clone(),
            Some(PutOptions::new().with_lease(lease)),
        );
        let t = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key.clone(), None)]);
        let r = self.op("campaign", kv.txn(t)).await?;
        if r.succeeded() {
            self.outbox.forget();
            self.lead();
            return Ok(());
        }
        let held = r.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                let holder = String::from_utf8_lossy(kv.value()).into_owned();
                (holder, kv.mod_revision(), kv.lease())
            }),
            _ => None,
        });
        self.state.leader_key = held.as_ref().map(|(h, ..)| h.clone());
        self.state.settle_leader();
        match held {
            Some((holder, rev, on))
                if holder == self.keys.me && on != lease && self.own_leases.contains(&on) =>
            {
                let t = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                    .and_then([put]);
                if self.op("campaign", kv.txn(t)).await?.succeeded() {
                    tracing::info!("cluster: the leadership moves onto this session's lease");
                    self.lead();
                }
            }
            Some((holder, rev, _)) if self.state.leader.is_none() => {
                tracing::warn!(%holder, "cluster: the leader key names no live instance; taking it over");
                let t = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                    .and_then([put]);
                if self.op("campaign", kv.txn(t)).await?.succeeded() {
                    self.outbox.forget();
                    self.lead();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// This instance holds the leader key now.
    pub(super) fn lead(&mut self) {
        tracing::info!("cluster: this instance now sends the cluster's alerts");
        crate::base::metrics::cluster_writes("leader", 1);
        self.state.leader_key = Some(self.keys.me.clone());
        self.state.settle_leader();
    }
}
