//! The cluster as `/status`, `/explain` and `/metrics` show it: each instance's view of a
//! member, which side decided, the link, the leader and the live instances.

use std::time::Instant;

use serde::Serialize;

use super::super::Engine;
use crate::cluster::Link;

/// One instance's view of a member, for `/status` and `/explain`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewStatus {
    pub instance: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this view is on the side that decided.
    pub decided: bool,
}

/// The cluster as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub id: String,
    pub link: Link,
    pub problem: Option<String>,
    pub quorum: String,
    pub leader: Option<String>,
    /// How long ago etcd last answered this instance (a call, a lease renewal, or the
    /// member's read every quarter second): at `lease_ttl` it falls back.
    pub etcd_answered_secs_ago: f64,
    /// Whether answers follow the quorum now (else this instance's own view).
    pub follows_quorum: bool,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub id: String,
    #[serde(flatten)]
    pub instance: crate::cluster::Instance,
}

impl Engine {
    /// Why member `i` is in answers or not, when the quorum decides it.
    pub(in crate::engine) fn quorum_why(
        &self,
        i: usize,
        health: &str,
        now: Instant,
    ) -> Option<String> {
        let d = self.decision(i)?;
        let live = d.down.len() + d.up_by.len();
        let this = format!("this instance's own view: {health}");
        if !d.up {
            return Some(format!(
                "down by the quorum: {} of {live} instances see it down ({} needed: {}); {this}",
                d.down.len(),
                d.needed,
                d.down.join(", ")
            ));
        }
        let up = format!(
            "up by the quorum: {} of {live} instances see it up ({}), {} down of {} needed",
            d.up_by.len(),
            d.up_by.join(", "),
            d.down.len(),
            d.needed
        );
        Some(
            match self.table.members[i]
                .region
                .filter(|&r| self.table.removed[r])
            {
                Some(r) => format!(
                    "{up}, but region {} is removed ({} of {} healthy); {this}",
                    self.cfg.regions[r].name,
                    self.region_healthy(r, now),
                    self.cfg.regions[r].members.len()
                ),
                None => format!("{up}; {this}"),
            },
        )
    }

    /// Each live instance's view of member `i`, for `/status` and `/explain`.
    pub(in crate::engine) fn views_of(&self, i: usize) -> Vec<ViewStatus> {
        let Some(c) = &self.cluster else {
            return Vec::new();
        };
        let d = self.decision(i);
        let Some(views) = c.shared.views.get(&self.member_key(i)) else {
            return Vec::new();
        };
        views
            .iter()
            .filter(|(id, _)| c.shared.instances.contains_key(*id))
            .map(|(id, v)| ViewStatus {
                instance: id.clone(),
                up: v.up,
                error: v.error.clone(),
                decided: d.is_some_and(|d| d.up == v.up),
            })
            .collect()
    }

    /// The cluster's gauges (stored with the others, so that they stay fresh).
    pub(in crate::engine) fn cluster_gauges(&self) {
        use crate::base::metrics::{
            CLUSTER_CONNECTED, CLUSTER_ETCD_SILENCE, CLUSTER_INSTANCES, CLUSTER_LEADER,
            MEMBER_DISAGREES,
        };
        let Some(c) = &self.cluster else { return };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        metrics::gauge!(CLUSTER_CONNECTED).set(flag(c.link == Link::Connected));
        metrics::gauge!(CLUSTER_INSTANCES).set(c.shared.instances.len() as f64);
        metrics::gauge!(CLUSTER_ETCD_SILENCE).set(c.handle.heard.borrow().elapsed().as_secs_f64());
        let leader = c.shared.leader.as_deref() == Some(c.handle.id.as_str());
        metrics::gauge!(CLUSTER_LEADER).set(flag(leader && c.link == Link::Connected));
        for (i, m) in self.cfg.members.iter().enumerate() {
            let pool = self.cfg.pools[m.pool].name.clone();
            let on = c.disagree.get(i).is_some_and(|d| d.1);
            metrics::gauge!(MEMBER_DISAGREES, "pool" => pool, "member" => m.name.clone())
                .set(flag(on));
        }
    }

    pub(in crate::engine) fn cluster_status(&self) -> Option<ClusterStatus> {
        let c = self.cluster.as_ref()?;
        Some(ClusterStatus {
            id: c.handle.id.clone(),
            link: c.link,
            problem: c.shared.problem.clone(),
            quorum: c.handle.quorum.to_string(),
            leader: c.shared.leader.clone(),
            etcd_answered_secs_ago: c.handle.heard.borrow().elapsed().as_secs_f64(),
            follows_quorum: c.link == Link::Connected,
            instances: c
                .shared
                .instances
                .iter()
                .map(|(id, i)| InstanceStatus {
                    id: id.clone(),
                    instance: i.clone(),
                })
                .collect(),
        })
    }
}
