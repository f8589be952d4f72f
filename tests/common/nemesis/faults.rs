//! The nemesis: faults applied and healed on a [`World`], one at a time by a test or at
//! random from a seed. Every fault, heal, backend change and ctl operation goes into the
//! history, so that the checker knows what was in force at every moment.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use super::history::Ev;
use super::net::Mode;
use super::{World, ETCD, GTMD, MEMBERS, REGIONS, SECONDARY};

/// One fault. Hosts by their lab names.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Packets between every host of `a` and every host of `b` are dropped (only those from
    /// `a` to `b` when `one_way`). `kind` names it for the summary.
    Cut {
        kind: &'static str,
        a: Vec<&'static str>,
        b: Vec<&'static str>,
        one_way: bool,
    },
    /// A host's link to the bridge is down.
    LinkDown(&'static str),
    /// SIGSTOP (healed by SIGCONT) of a gtmd instance or an etcd member.
    Pause(&'static str),
    /// SIGKILL (healed by a restart) of a gtmd instance or an etcd member.
    Kill(&'static str),
    /// An etcd member replaced by one with an empty data directory (healed at once).
    Wipe(&'static str),
    /// Every etcd member stopped, its data deleted, and a new empty cluster started (healed
    /// once the new cluster has a leader).
    WipeAll,
    /// A backend behaves as `mode` (healed: up).
    Backend { member: usize, mode: Mode },
    /// A host's link slowed both ways by a token bucket (`tbf`) of this rate.
    Slow(&'static str, &'static str),
}

impl Fault {
    /// The kind, for the summary table.
    pub fn kind(&self) -> String {
        match self {
            Fault::Cut { kind, one_way, .. } => {
                format!("{kind}{}", if *one_way { " (one-way)" } else { "" })
            }
            Fault::LinkDown(h) => format!("link down {}", &h[..1]),
            Fault::Pause(h) => format!("pause {}", process_kind(h)),
            Fault::Kill(h) => format!("kill {}", process_kind(h)),
            Fault::Wipe(_) => "etcd member emptied".into(),
            Fault::WipeAll => "etcd data lost".into(),
            Fault::Backend { mode, .. } => format!("backend {mode:?}").to_lowercase(),
            Fault::Slow(h, _) => format!("slow link {}", &h[..1]),
        }
    }

    /// Whether it can slow the quorum down: it touches etcd, an instance's process, or the
    /// path between an instance and etcd (backend faults and cuts between instances and
    /// regions do not).
    pub fn disturbs_quorum(&self) -> bool {
        let core = |h: &str| h.starts_with('e') || h.starts_with('g');
        match self {
            Fault::Cut { a, b, .. } => a.iter().any(|x| {
                b.iter()
                    .any(|y| core(x) && core(y) && (x.starts_with('e') || y.starts_with('e')))
            }),
            Fault::LinkDown(h) | Fault::Pause(h) | Fault::Kill(h) => core(h),
            Fault::Backend { .. } => false,
            _ => true,
        }
    }

    /// Whether it can make etcd elect a leader anew (which extends every lease by the
    /// election timeout): it stops, empties, slows or isolates an etcd member, or cuts etcd
    /// members from each other.
    pub fn shakes_etcd(&self) -> bool {
        let e = |h: &&str| h.starts_with('e');
        match self {
            Fault::Cut { a, b, .. } => a.iter().any(e) && b.iter().any(e),
            Fault::LinkDown(h) | Fault::Pause(h) | Fault::Kill(h) | Fault::Wipe(h) => e(h),
            Fault::Slow(h, _) => e(h),
            Fault::WipeAll => true,
            Fault::Backend { .. } => false,
        }
    }

    /// Whether packets between `x` and `y` pass no matter which way (a TCP connection needs
    /// both ways).
    pub fn separates(&self, x: &str, y: &str) -> bool {
        match self {
            Fault::Cut { a, b, .. } => {
                (a.contains(&x) && b.contains(&y)) || (a.contains(&y) && b.contains(&x))
            }
            Fault::LinkDown(h) => *h == x || *h == y,
            _ => false,
        }
    }
}

/// What runs on host `h`, for the summary.
fn process_kind(h: &str) -> &'static str {
    match h.as_bytes()[0] {
        b'g' => "gtmd",
        b'e' => "etcd",
        _ => "secondary",
    }
}

/// The secondary cut from its primary (g1): NOTIFYs and transfers are lost meanwhile.
pub fn secondary_from_primary(one_way: bool) -> Fault {
    Fault::Cut {
        kind: "cut secondary from primary",
        a: vec![GTMD[0]],
        b: vec![SECONDARY],
        one_way,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

fn gtmd_index(h: &str) -> Option<usize> {
    GTMD.iter().position(|g| *g == h)
}

fn etcd_index(h: &str) -> Option<usize> {
    ETCD.iter().position(|e| *e == h)
}

/// The faults in force on a world, and how many of each kind were injected.
pub struct Nemesis {
    pub active: Vec<(u64, Fault)>,
    next: u64,
    pub injected: BTreeMap<String, u64>,
    /// Per healed slow link: the packets its buckets held back or dropped.
    pub slowed: Vec<u64>,
    /// Processes (etcd members, the secondary) that ended without a fault of the nemesis.
    pub died: u64,
}

impl Default for Nemesis {
    fn default() -> Self {
        Nemesis::new()
    }
}

impl Nemesis {
    pub fn new() -> Nemesis {
        Nemesis {
            active: Vec::new(),
            next: 1,
            injected: BTreeMap::new(),
            slowed: Vec::new(),
            died: 0,
        }
    }

    /// Applies `f`: its id in the history. A wipe that cannot be done (etcd without a
    /// quorum) is not applied: None.
    pub fn apply(&mut self, w: &mut World, f: Fault) -> Option<u64> {
        let id = self.next;
        self.next += 1;
        // The checker gives etcd time to elect a new leader when the fault takes it away.
        if f.shakes_etcd() {
            w.h.add(Ev::EtcdLeader(w.etcd_leader_index()));
        }
        match &f {
            Fault::Cut { .. } | Fault::LinkDown(_) | Fault::Slow(..) => {}
            Fault::Pause(h) => signal(pid(w, h)?, "-STOP"),
            Fault::Kill(h) => {
                if let Some(i) = gtmd_index(h) {
                    w.gtmd[i] = None;
                } else if *h == SECONDARY {
                    w.secondary = None;
                } else {
                    w.etcd[etcd_index(h)?] = None;
                }
            }
            // Recorded as in force from the moment the member is removed (an election
            // starts then when it led), not from when it is back.
            Fault::Wipe(h) => {
                let removed = std::cell::Cell::new(false);
                let note = |w: &World, on: bool| {
                    w.h.add(Ev::Fault {
                        id,
                        fault: f.clone(),
                        on,
                    })
                };
                let done = wipe(w, etcd_index(h)?, &|w: &World| {
                    removed.set(true);
                    note(w, true);
                });
                if done.is_none() {
                    // Removed but not replaced: whatever etcd holds now, the fault is over.
                    if removed.get() {
                        note(w, false);
                    }
                    return None;
                }
            }
            Fault::WipeAll => {
                for (e, name) in w.etcd.iter_mut().zip(ETCD) {
                    *e = None;
                    let _ = std::fs::remove_dir_all(w.dir.path().join(format!("{name}.etcd")));
                }
            }
            Fault::Backend { member, mode } => {
                w.backends[*member].set(*mode);
                w.h.add(Ev::Backend {
                    member: *member,
                    mode: *mode,
                });
            }
        }
        if !matches!(f, Fault::Wipe(_)) {
            w.h.add(Ev::Fault {
                id,
                fault: f.clone(),
                on: true,
            });
        }
        *self.injected.entry(f.kind()).or_insert(0) += 1;
        self.active.push((id, f.clone()));
        match &f {
            Fault::Cut { .. } => self.apply_cuts(w),
            Fault::LinkDown(h) => w.lab.link(h, false),
            Fault::Slow(h, rate) => {
                w.lab.slow(h, Some(rate));
            }
            Fault::Pause(h) | Fault::Kill(h) => {
                let paused = matches!(f, Fault::Pause(_));
                if let Some(i) = gtmd_index(h) {
                    w.h.add(Ev::Gtmd {
                        inst: i,
                        running: paused.then_some(false),
                    });
                } else if *h == SECONDARY {
                    w.h.add(Ev::Secondary(paused.then_some(false)));
                }
            }
            Fault::Wipe(_) => self.heal(w, id),
            Fault::WipeAll => {
                for i in 0..ETCD.len() {
                    w.start_etcd(i, false);
                }
                let up = super::wait_for(Duration::from_secs(30), || w.etcd_leader().is_some());
                assert!(up.is_some(), "the new etcd cluster elected no leader");
                self.heal(w, id);
            }
            Fault::Backend { .. } => {}
        }
        Some(id)
    }

    /// Heals fault `id`.
    pub fn heal(&mut self, w: &mut World, id: u64) {
        let Some(at) = self.active.iter().position(|(i, _)| *i == id) else {
            return;
        };
        let (_, f) = self.active.remove(at);
        match &f {
            Fault::Cut { .. } => self.apply_cuts(w),
            // Up only when no other fault in force holds the same link down.
            Fault::LinkDown(h) => {
                if !self
                    .active
                    .iter()
                    .any(|(_, f)| matches!(f, Fault::LinkDown(x) if x == h))
                {
                    w.lab.link(h, true);
                }
            }
            Fault::Slow(h, _) => {
                let held = w.lab.slow(h, None);
                self.slowed.push(held);
            }
            Fault::Pause(h) => {
                if let Some(p) = pid(w, h) {
                    signal(p, "-CONT");
                }
                if let Some(i) = gtmd_index(h) {
                    w.h.add(Ev::Gtmd {
                        inst: i,
                        running: Some(true),
                    });
                } else if *h == SECONDARY {
                    w.h.add(Ev::Secondary(Some(true)));
                }
            }
            Fault::Kill(h) => match gtmd_index(h) {
                Some(i) => {
                    w.start_gtmd(i);
                    w.h.add(Ev::Gtmd {
                        inst: i,
                        running: Some(true),
                    });
                }
                None if *h == SECONDARY => {
                    w.start_secondary();
                    w.h.add(Ev::Secondary(Some(true)));
                }
                None => w.start_etcd(etcd_index(h).unwrap(), false),
            },
            Fault::Wipe(_) | Fault::WipeAll => {}
            Fault::Backend { member, .. } => {
                w.backends[*member].set(Mode::Up);
                w.h.add(Ev::Backend {
                    member: *member,
                    mode: Mode::Up,
                });
            }
        }
        w.h.add(Ev::Fault {
            id,
            fault: f,
            on: false,
        });
    }

    /// An etcd member or the secondary whose process ended without a fault of the nemesis
    /// is recorded as killed from now (the checker must know it is gone; healing restarts
    /// it), and said with the end of its log.
    pub fn notice_deaths(&mut self, w: &mut World) {
        for (i, e) in ETCD.iter().enumerate() {
            let ended = w.etcd[i]
                .as_mut()
                .and_then(|c| c.0.try_wait().ok().flatten());
            if let Some(status) = ended {
                let log = std::fs::read_to_string(w.dir.path().join(format!("{e}.etcd.log")));
                let log = log.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("{e} ended on its own ({status}); its log ends:");
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
                }
                self.died += 1;
                self.apply(w, Fault::Kill(e));
            }
        }
        let ended = w
            .secondary
            .as_mut()
            .and_then(|c| c.0.try_wait().ok().flatten());
        if let Some(status) = ended {
            eprintln!("{SECONDARY} ended on its own ({status})");
            self.died += 1;
            self.apply(w, Fault::Kill(SECONDARY));
        }
    }

    /// Heals every fault, newest first.
    pub fn heal_all(&mut self, w: &mut World) {
        while let Some((id, _)) = self.active.last().cloned() {
            self.heal(w, id);
        }
    }

    /// Sets the nftables rules to the cuts in force, each host's at once: the cuts that
    /// stay in force never open.
    fn apply_cuts(&self, w: &mut World) {
        let mut cuts = Vec::new();
        for (_, f) in &self.active {
            if let Fault::Cut { a, b, one_way, .. } = f {
                for x in a {
                    for y in b {
                        cuts.push((*x, *y, *one_way));
                    }
                }
            }
        }
        w.lab.set_cuts(&cuts);
    }
}

/// The process id of host `h`'s gtmd, etcd or Knot, if running.
fn pid(w: &World, h: &str) -> Option<u32> {
    match gtmd_index(h) {
        Some(i) => w.gtmd[i].as_ref().map(|c| c.id()),
        None if h == SECONDARY => w.secondary.as_ref().map(|c| c.id()),
        None => w.etcd[etcd_index(h)?].as_ref().map(|c| c.id()),
    }
}

/// Replaces etcd member `i` by an empty one, as after the loss of its disk: removed from
/// the cluster, its data deleted, added again and started to join. None when the other
/// members cannot do it (no quorum).
/// Replaces etcd member `i` by an empty one; `removed` is called once the member is out of
/// the cluster.
fn wipe(w: &mut World, i: usize, removed: &dyn Fn(&World)) -> Option<()> {
    match try_wipe(w, i, removed) {
        Ok(()) => Some(()),
        Err(e) => {
            eprintln!("etcd member {} not replaced: {e}", ETCD[i]);
            None
        }
    }
}

fn try_wipe(w: &mut World, i: usize, removed: &dyn Fn(&World)) -> Result<(), String> {
    let others: Vec<String> = (0..ETCD.len())
        .filter(|j| *j != i)
        .map(|j| w.lab.etcd_url(ETCD[j]))
        .collect();
    let eps = format!("--endpoints={}", others.join(","));
    let ctl = |w: &World, args: &[&str]| {
        let out = w
            .lab
            .command(super::CLIENT, "etcdctl")
            .env("ETCDCTL_API", "3")
            .args([eps.as_str(), "--command-timeout=5s"])
            .args(args)
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.success() {
            true => Ok(text),
            false => Err(format!(
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    };
    let list = ctl(w, &["member", "list", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&list).map_err(|e| format!("{e}: {list}"))?;
    let id = v["members"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == ETCD[i]))
        .and_then(|m| m["ID"].as_u64())
        .ok_or_else(|| format!("no member {} in {list}", ETCD[i]))?;
    // Removed while it still runs (etcd refuses a removal during an election, as when
    // the member killed first was the leader), then stopped.
    // etcd also refuses it ("unhealthy cluster") until every member has been up a few
    // seconds: tried again for 15 s.
    let again = |w: &World, args: &[&str]| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut r = ctl(w, args);
        while r.is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            // Who leads when the removal is tried again (the checker's election time).
            w.h.add(Ev::EtcdLeader(w.etcd_leader_index()));
            r = ctl(w, args);
        }
        r
    };
    again(w, &["member", "remove", &format!("{id:x}")])?;
    removed(w);
    w.etcd[i] = None;
    let data = w.dir.path().join(format!("{}.etcd", ETCD[i]));
    let _ = std::fs::remove_dir_all(&data);
    let peer = format!("--peer-urls=http://{}:2380", w.lab.ip(ETCD[i]));
    let added = again(w, &["member", "add", ETCD[i], &peer]);
    w.start_etcd(i, added.is_ok());
    added.map(|_| ())
}

/// A ctl operation through instance `via`: `disable` or `enable` of member `k`. Recorded
/// with its reply; true when acknowledged.
pub fn ctl(w: &World, via: usize, op: &'static str, k: usize) -> bool {
    let target = format!("web/{}", MEMBERS[k].0);
    let started = w.h.now();
    let (path, body) = if op == "disable" {
        (
            "/overrides",
            serde_json::json!({"target": target, "action": "disable", "reason": "nemesis"}),
        )
    } else {
        ("/overrides/clear", serde_json::json!({"target": target}))
    };
    let r = w.post(via, path, &body.to_string());
    let acked = matches!(r, Ok((200, _)));
    let reply = match r {
        Ok((c, b)) => format!("{c} {}", b.chars().take(200).collect::<String>()),
        Err(e) => e,
    };
    w.h.add(Ev::Ctl {
        via,
        op,
        target,
        started,
        acked,
        reply,
    });
    acked
}

/// A config reload of instance `i` (the same file): recorded as a ctl operation.
pub fn reload(w: &World, i: usize) -> bool {
    let started = w.h.now();
    let r = w.post(i, "/reload", "{}");
    let acked = matches!(r, Ok((200, _)));
    let reply = format!("{r:?}").chars().take(200).collect();
    w.h.add(Ev::Ctl {
        via: i,
        op: "reload",
        target: String::new(),
        started,
        acked,
        reply,
    });
    acked
}

/// The lab's named cuts, for tests and the random nemesis.
pub fn instance_from_etcd(g: &'static str, one_way: bool) -> Fault {
    Fault::Cut {
        kind: "cut instance from etcd",
        a: vec![g],
        b: ETCD.to_vec(),
        one_way,
    }
}

pub fn leader_from_followers(leader: usize) -> Fault {
    let f: Vec<&'static str> = (0..ETCD.len())
        .filter(|j| *j != leader)
        .map(|j| ETCD[j])
        .collect();
    Fault::Cut {
        kind: "cut etcd leader from followers",
        a: vec![ETCD[leader]],
        b: f,
        one_way: false,
    }
}

pub fn instance_from_region(g: &'static str, r: usize, one_way: bool) -> Fault {
    Fault::Cut {
        kind: "cut instance from region",
        a: vec![g],
        b: vec![REGIONS[r]],
        one_way,
    }
}

pub fn region_from_all(r: usize) -> Fault {
    Fault::Cut {
        kind: "cut region from all instances",
        a: GTMD.to_vec(),
        b: vec![REGIONS[r]],
        one_way: false,
    }
}
