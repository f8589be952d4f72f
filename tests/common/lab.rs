//! A small network lab for fault tests: hosts that are network namespaces made by the test,
//! each with one address (10.77.0.N/24, which exists only inside the lab) on a bridge that
//! lives in a namespace of its own; processes started inside a host; and partitions made
//! with nftables inside the hosts' namespaces (`cut(a, b)`, `heal()`). Dropping the lab
//! kills every process in its namespaces and deletes them, also when a test fails.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Helpers for the programs the tests run
//! in a lab: [`Lab::etcd`] starts an etcd member per host, [`Lab::curl`] and
//! [`Lab::etcdctl`] ask from inside a host.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::KillOnDrop;

/// One host of the lab: a network namespace with one address on the lab's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// The namespace's name (`ip netns`).
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// The lab: a bridge namespace, hosts, and the cuts in force.
pub struct Lab {
    prefix: String,
    bridge: String,
    pub hosts: Vec<Host>,
    cuts: Vec<(usize, usize)>,
    /// Per host, the rules [`Lab::set_cuts`] last put in force.
    rules: Vec<String>,
}

/// Runs `ip` with `args`; panics with what failed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// A lab with one host per name (at most 250), each on the bridge.
    pub fn new(names: &[&str]) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "lab{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let bridge = format!("{prefix}-bridge");
        let mut lab = Lab {
            prefix,
            bridge: bridge.clone(),
            hosts: Vec::new(),
            cuts: Vec::new(),
            rules: Vec::new(),
        };
        ip(&["netns", "add", &bridge]);
        ip(&["-n", &bridge, "link", "set", "lo", "up"]);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        for n in names {
            lab.add(n);
        }
        lab
    }

    /// Adds host `name`: a namespace, `lo` up, and `eth0` with the next address on the bridge.
    pub fn add(&mut self, name: &str) -> &Host {
        let i = self.hosts.len();
        assert!(i < 250, "a lab has at most 250 hosts");
        let ns = format!("{}-{name}", self.prefix);
        let addr = Ipv4Addr::new(10, 77, 0, i as u8 + 1);
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let port = format!("v{i}");
        let (b, cidr) = (self.bridge.clone(), format!("{addr}/24"));
        ip(&[
            "-n", &b, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &b, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        self.hosts.push(Host {
            name: name.to_string(),
            ns,
            ip: addr,
        });
        &self.hosts[i]
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} in the lab"))
    }

    pub fn host(&self, name: &str) -> &Host {
        &self.hosts[self.index(name)]
    }

    pub fn ip(&self, name: &str) -> Ipv4Addr {
        self.host(name).ip
    }

    /// A command that runs `program` inside host `name`.
    pub fn command(&self, name: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(name).ns, program]);
        c
    }

    /// Starts `program args` inside host `name`, its output appended to `log`; killed when
    /// the handle or the lab is dropped.
    pub fn spawn_in(&self, name: &str, program: &str, args: &[&str], log: &Path) -> KillOnDrop {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let child = self
            .command(name, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {name}: {e}"));
        KillOnDrop(child)
    }

    /// Runs `program args` inside host `name` to the end.
    pub fn run_in(&self, name: &str, program: &str, args: &[&str]) -> Output {
        self.command(name, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {name}: {e}"))
    }

    /// `curl -s` of `url` from inside host `name` (1 s at most): the body, or None.
    pub fn curl(&self, name: &str, args: &[&str]) -> Option<String> {
        let mut a = vec!["-sf", "--max-time", "1"];
        a.extend_from_slice(args);
        let out = self.run_in(name, "curl", &a);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies nftables `script` inside host `i`'s namespace.
    fn nft(&self, i: usize, script: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (nftables) runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft in {}: {}\n{script}",
            self.hosts[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts `a` and `b` apart: each host drops every packet to and from the other (a silent
    /// partition, as a dead link: connections hang, nothing is refused).
    pub fn cut(&mut self, a: &str, b: &str) {
        let (ia, ib) = (self.index(a), self.index(b));
        for (me, other) in [(ia, ib), (ib, ia)] {
            let peer = self.hosts[other].ip;
            self.nft(
                me,
                &format!(
                    "table inet lab {{\n\
                     chain input {{ type filter hook input priority 0; }}\n\
                     chain output {{ type filter hook output priority 0; }}\n}}\n\
                     add rule inet lab input ip saddr {peer} drop\n\
                     add rule inet lab output ip daddr {peer} drop\n"
                ),
            );
        }
        self.cuts.push((ia, ib));
    }

    /// Drops every packet from `from` to `to` (at `from`'s output and `to`'s input); packets
    /// the other way pass (a one-way partition: TCP between them stalls, UDP flows one way).
    pub fn cut_one_way(&mut self, from: &str, to: &str) {
        let (ia, ib) = (self.index(from), self.index(to));
        let table = "table inet lab {\n\
                     chain input { type filter hook input priority 0; }\n\
                     chain output { type filter hook output priority 0; }\n}\n";
        let (pa, pb) = (self.hosts[ia].ip, self.hosts[ib].ip);
        self.nft(
            ia,
            &format!("{table}add rule inet lab output ip daddr {pb} drop\n"),
        );
        self.nft(
            ib,
            &format!("{table}add rule inet lab input ip saddr {pa} drop\n"),
        );
        self.cuts.push((ia, ib));
    }

    /// Replaces every cut in force by `cuts` (`from`, `to`, one way or both), each host's
    /// rules in one nftables transaction: a cut in force before and after never opens.
    pub fn set_cuts(&mut self, cuts: &[(&str, &str, bool)]) {
        let mut rules = vec![String::new(); self.hosts.len()];
        let mut pairs = Vec::new();
        for &(from, to, one_way) in cuts {
            let (ia, ib) = (self.index(from), self.index(to));
            let (pa, pb) = (self.hosts[ia].ip, self.hosts[ib].ip);
            rules[ia] += &format!("add rule inet lab output ip daddr {pb} drop\n");
            rules[ib] += &format!("add rule inet lab input ip saddr {pa} drop\n");
            if !one_way {
                rules[ia] += &format!("add rule inet lab input ip saddr {pb} drop\n");
                rules[ib] += &format!("add rule inet lab output ip daddr {pa} drop\n");
            }
            pairs.push((ia, ib));
        }
        self.rules.resize(self.hosts.len(), String::new());
        for (i, r) in rules.iter().enumerate() {
            if *r == self.rules[i] {
                continue;
            }
            let script = format!(
                "table inet lab {{\n\
                 chain input {{ type filter hook input priority 0; }}\n\
                 chain output {{ type filter hook output priority 0; }}\n}}\n\
                 flush table inet lab\n{r}"
            );
            self.nft(i, &script);
            self.rules[i] = r.clone();
        }
        self.cuts = pairs;
    }

    /// Slows host `name`'s link both ways with a token bucket (`tbf`: `rate`, a queue of at
    /// most 400 ms, then drops), or (`rate` None) takes that off and returns how many
    /// packets the buckets held back or dropped (`overlimits` + `dropped` of both ends).
    pub fn slow(&self, name: &str, rate: Option<&str>) -> u64 {
        let i = self.index(name);
        let ends = [
            (self.bridge.clone(), format!("v{i}")),
            (self.hosts[i].ns.clone(), "eth0".to_string()),
        ];
        let mut held = 0;
        for (ns, dev) in &ends {
            let tc = |args: &[&str]| {
                let out = Command::new("ip")
                    .args(["netns", "exec", ns, "tc"])
                    .args(args)
                    .output()
                    .expect("tc (iproute2) runs");
                assert!(
                    out.status.success(),
                    "tc {} in {ns}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            match rate {
                Some(r) => {
                    let tbf = ["qdisc", "add", "dev", dev, "root", "tbf", "rate", r];
                    tc(&[&tbf[..], &["burst", "2kb", "latency", "400ms"]].concat());
                }
                None => {
                    let stats = tc(&["-s", "qdisc", "show", "dev", dev]);
                    let count = |word: &str| -> u64 {
                        let w: Vec<&str> = stats
                            .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                            .collect();
                        w.iter()
                            .position(|x| *x == word)
                            .and_then(|p| w.get(p + 1)?.parse().ok())
                            .unwrap_or(0)
                    };
                    held += count("dropped") + count("overlimits");
                    tc(&["qdisc", "del", "dev", dev, "root"]);
                }
            }
        }
        held
    }

    /// Sets host `name`'s link to the bridge down (`up` false) or up again.
    pub fn link(&self, name: &str, up: bool) {
        let port = format!("v{}", self.index(name));
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.bridge, "link", "set", &port, state]);
    }

    /// Cuts `a` from every other host.
    pub fn isolate(&mut self, a: &str) {
        let others: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.name != a)
            .map(|h| h.name.clone())
            .collect();
        for o in others {
            self.cut(a, &o);
        }
    }

    /// Ends every cut.
    pub fn heal(&mut self) {
        let mut hosts: Vec<usize> = self.cuts.iter().flat_map(|&(a, b)| [a, b]).collect();
        hosts.sort();
        hosts.dedup();
        for i in hosts {
            self.nft(i, "delete table inet lab\n");
        }
        self.cuts.clear();
        self.rules.clear();
    }

    /// The etcd client URL of a member on host `name`.
    pub fn etcd_url(&self, name: &str) -> String {
        format!("http://{}:2379", self.ip(name))
    }

    /// Starts one etcd member on each of `names` (a new cluster; data and logs in `dir`).
    /// Returns the members' processes; [`Lab::etcdctl`] tells when they have a leader.
    pub fn etcd(&self, names: &[&str], dir: &Path) -> Vec<KillOnDrop> {
        let initial: Vec<String> = names
            .iter()
            .map(|n| format!("{n}=http://{}:2380", self.ip(n)))
            .collect();
        let initial = initial.join(",");
        names
            .iter()
            .map(|n| {
                let (client, peer) = (self.etcd_url(n), format!("http://{}:2380", self.ip(n)));
                let data = dir.join(format!("{n}.etcd"));
                let data = data.to_str().unwrap();
                let args = [
                    "--name",
                    n,
                    "--data-dir",
                    data,
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-token",
                    &self.prefix,
                    "--log-level",
                    "warn",
                ];
                self.spawn_in(n, "etcd", &args, &dir.join(format!("{n}.etcd.log")))
            })
            .collect()
    }

    /// `etcdctl --endpoints=ENDPOINTS ARGS` from inside host `from`, 2 s at most per
    /// request: its output, or None when it failed.
    pub fn etcdctl(&self, from: &str, endpoints: &[String], args: &[&str]) -> Option<String> {
        let eps = format!("--endpoints={}", endpoints.join(","));
        let mut a = vec![eps.as_str(), "--command-timeout=2s", "--dial-timeout=1s"];
        a.extend_from_slice(args);
        let out = self
            .command(from, "etcdctl")
            .env("ETCDCTL_API", "3")
            .args(&a)
            .stdin(Stdio::null())
            .output()
            .expect("etcdctl runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut all: Vec<String> = self.hosts.iter().map(|h| h.ns.clone()).collect();
        all.push(self.bridge.clone());
        for ns in &all {
            // Every process still running inside (each started by this lab), by its id.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        for ns in &all {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}
