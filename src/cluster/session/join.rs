//! Joining the cluster: the registration of this instance (refused while another live
//! instance holds its id), and the first read of everything under the prefix.

use etcd_client::{
    Compare, CompareOp, GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::Session;
use crate::cluster::{Instance, Shared};

impl Session {
    /// Registers this instance on `lease`: when its key is free, on no lease, or held on a
    /// lease of this instance's own (a session before this one). A key on any other lease is another live
    /// instance with the same id: refused, and nothing is written.
    pub(super) async fn register(&mut self, kv: &mut KvClient, lease: i64) -> Result<(), String> {
        let key = self.keys.instance();
        let me = serde_json::to_vec(&self.me).map_err(|e| e.to_string())?;
        let put = || {
            TxnOp::put(
                key.clone(),
                me.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
        };
        let t = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put()])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut r = self.op("register", kv.txn(t)).await?;
        if !r.succeeded() {
            let (holder, value) = held(&r).unwrap_or_default();
            // A key on no lease (written by hand) is no live instance's.
            if holder != 0 && !self.own_leases.contains(&holder) {
                // This lease holds nothing: it is not ours to keep.
                self.own_leases.retain(|&l| l != lease);
                return Err(self.duplicate(holder, &value));
            }
            let t = Txn::new()
                .when([Compare::lease(key.clone(), CompareOp::Equal, holder)])
                .and_then([put()]);
            r = self.op("register", kv.txn(t)).await?;
            if !r.succeeded() {
                return Err("register: the registration changed under this instance".into());
            }
        }
        crate::base::metrics::cluster_writes("register", 1);
        Ok(())
    }

    /// Why this instance may not join: another holds its id.
    pub(super) fn duplicate(&self, lease: i64, value: &[u8]) -> String {
        let other = serde_json::from_slice::<Instance>(value)
            .map(|i| {
                format!(
                    "a {} of version {} registered at {} (Unix time)",
                    i.kind, i.version, i.since
                )
            })
            .unwrap_or_else(|_| "an instance".into());
        format!(
            "another live instance holds the id {:?} ({other}, on etcd lease {lease:x}): this instance does not join the cluster until it is gone; give each instance its own [cluster] id",
            self.keys.me
        )
    }

    /// Registers on `lease`, seeds the overrides if etcd has none, reads everything, and
    /// writes this instance's views onto the lease. Returns the revision read at.
    pub(super) async fn join(&mut self, kv: &mut KvClient, lease: i64) -> Result<i64, String> {
        self.register(kv, lease).await?;
        self.seed(kv).await?;
        let all = GetOptions::new().with_prefix();
        let resp = self
            .op("read", kv.get(self.keys.prefix.clone(), Some(all)))
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut state = Shared {
            link: self.state.link,
            problem: self.state.problem.clone(),
            joined_rev: rev,
            ..Shared::default()
        };
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            state.apply(&self.keys, &key, Some(kv.value()));
            state.note_revision(&self.keys, &key, kv.mod_revision());
        }
        // Absent (and not seeded: the cache is empty) or garbled: the last good list stays.
        state.overrides.get_or_insert_with(|| self.cached.clone());
        // Every view of ours is written again onto this lease, whatever etcd held (its
        // values may predate what this instance saw meanwhile); those no longer ours go.
        let stale: Vec<String> = std::mem::take(&mut self.own).into_keys().collect();
        let mine: Vec<String> = state
            .views
            .iter()
            .filter(|(_, v)| v.contains_key(&self.keys.me))
            .map(|(m, _)| m.clone())
            .collect();
        self.state = state;
        self.remember_overrides();
        let stale = stale.into_iter().chain(mine).collect();
        // What it alerted on its own goes first: the leader sees it before the views.
        self.write_alone(kv, lease).await?;
        self.write_views(kv, lease, stale).await?;
        Ok(rev)
    }
}

/// The lease and value of the key a failed registration read.
fn held(r: &etcd_client::TxnResponse) -> Option<(i64, Vec<u8>)> {
    r.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| (kv.lease(), kv.value().to_vec())),
        _ => None,
    })
}
