//! Static-zone answers compared with Knot DNS and NSD serving the same zone file
//! (`zones/example.test.zone`), query by query, over UDP and TCP.
//!
//! gtmd gives minimal responses, as Knot does: every section must equal Knot's. NSD adds the
//! apex NS set to positive answers, so against NSD the rcode, flags, EDNS and answer section
//! must be equal, and the authority and additional sections too for negative answers and
//! referrals. Needs `knotd` and `nsd` (Debian packages knot and nsd; `.ci/run` installs them).

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, RecordType};

struct Reference {
    name: &'static str,
    addr: SocketAddr,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP right now.
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn find(bin: &str) -> PathBuf {
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"] {
        let p = Path::new(d).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is not installed: apt-get install -y knot nsd (see .ci/run)");
}

async fn start_reference(name: &'static str, zone: &Path) -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(zone, d.join("example.test.zone")).unwrap();
    let port = free_port();
    let (bin, args, conf) = if name == "knot" {
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n\
             zone:\n  - domain: example.test.\n    file: {d}/example.test.zone\n    storage: {d}\n",
            d = d.display()
        );
        (
            "knotd",
            vec!["-c".to_string(), d.join("ref.conf").display().to_string()],
            conf,
        )
    } else {
        let conf = format!(
            "server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    zonesdir: \"{d}\"\n\
             pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n\
             zonelistfile: \"{d}/zone.list\"\n    hide-version: yes\nremote-control:\n    control-enable: no\n\
             zone:\n    name: example.test.\n    zonefile: example.test.zone\n",
            d = d.display()
        );
        (
            "nsd",
            vec![
                "-d".to_string(),
                "-c".to_string(),
                d.join("ref.conf").display().to_string(),
            ],
            conf,
        )
    };
    std::fs::write(d.join("ref.conf"), conf).unwrap();
    let child = Command::new(find(bin))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_answering(name, addr, "example.test.").await;
    Reference {
        name,
        addr,
        _child: KillOnDrop(child),
        _dir: dir,
    }
}

/// One conformance case: how to build the query and how to send it.
struct Case {
    label: String,
    msg: Message,
    tcp: bool,
}

fn case(name: &str, t: RecordType) -> Case {
    Case {
        label: format!("{name} {t}"),
        msg: query_msg(name, t, true),
        tcp: false,
    }
}

fn cases() -> Vec<Case> {
    use RecordType::*;
    let mut v = vec![
        case("www.example.test.", A),
        case("www.example.test.", AAAA),
        case("WwW.ExAmPlE.tEsT.", A),
        case("nx.example.test.", A),
        case("www.example.test.", MX),
        case("www.example.test.", Unknown(999)),
        case("www.example.test.", ZERO),
        case("nx.example.test.", ZERO),
        case("www.example.test.", OPT),
        case("nx.example.test.", OPT),
        case("alias.example.test.", A),
        case("alias.example.test.", CNAME),
        case("chain.example.test.", AAAA),
        case("ext.example.test.", A),
        case("loop1.example.test.", A),
        case("dangling.example.test.", A),
        case("towild.example.test.", A),
        case("x.wild.example.test.", A),
        case("x.wild.example.test.", MX),
        case("a.b.wild.example.test.", TXT),
        case("wild.example.test.", A),
        case("*.wild.example.test.", A),
        case("q.cw.example.test.", A),
        case("q.cw.example.test.", CNAME),
        case("ent.sub.example.test.", A),
        case("sub.example.test.", TXT),
        case("deep.ent.sub.example.test.", A),
        case("nx.deep.ent.sub.example.test.", A),
        case("foo.child.example.test.", A),
        case("child.example.test.", NS),
        case("child.example.test.", A),
        case("child.example.test.", DS),
        case("ns.child.example.test.", A),
        case("todeleg.example.test.", A),
        case("x.deleg2.example.test.", A),
        case("example.test.", SOA),
        case("example.test.", NS),
        case("example.test.", MX),
        case("example.test.", TXT),
        case("example.test.", ANY),
        case("_sip._udp.example.test.", SRV),
        case("caa.example.test.", CAA),
        case("short.example.test.", A),
        case("ptr.example.test.", PTR),
        case("naptr.example.test.", NAPTR),
        case("sshfp.example.test.", SSHFP),
        case("_443._tcp.www.example.test.", TLSA),
        case("_tcp.www.example.test.", A),
        case("svc.example.test.", HTTPS),
        case("hinfo.example.test.", HINFO),
        case("multi.example.test.", TXT),
        case("big.example.test.", TXT),
        case("example.org.", A),
        case("test.", SOA),
        case("www.example.test.", AXFR),
    ];
    let mut c = case("big.example.test.", TXT);
    c.msg.edns = None;
    c.label = "big TXT without EDNS (TC)".into();
    v.push(c);
    let mut c = case("big.example.test.", TXT);
    c.msg.edns.as_mut().unwrap().set_max_payload(512);
    c.label = "big TXT with EDNS 512 (TC)".into();
    v.push(c);
    let mut c = case("big.example.test.", TXT);
    c.tcp = true;
    c.label = "big TXT over TCP".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg.edns = None;
    c.label = "www A without EDNS".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg.edns.as_mut().unwrap().set_dnssec_ok(true);
    c.label = "www A with DO".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg.edns.as_mut().unwrap().set_version(1);
    c.label = "www A with EDNS version 1 (BADVERS)".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(65001, vec![1, 2]));
    c.label = "www A with an unknown EDNS option".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg.metadata.op_code = OpCode::Status;
    c.label = "opcode STATUS (NOTIMP)".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg.queries[0].set_query_class(DNSClass::CH);
    c.label = "class CH".into();
    v.push(c);
    let mut c = case("www.example.test.", A);
    c.msg.queries[0].set_query_class(DNSClass::ANY);
    c.label = "class ANY (the IN data)".into();
    v.push(c);
    let mut c = case("alias.example.test.", A);
    c.msg.queries[0].set_query_class(DNSClass::ANY);
    c.label = "class ANY at a CNAME".into();
    v.push(c);
    // Types that live beside a CNAME are answered at its owner, never through it.
    for t in [RRSIG, NSEC, NSEC3] {
        v.push(case("alias.example.test.", t));
        v.push(case("chain.example.test.", t));
    }
    let mut c = case("www.example.test.", A);
    c.msg.metadata.recursion_desired = true;
    c.msg.metadata.checking_disabled = true;
    c.label = "RD and CD are copied".into();
    v.push(c);
    for name in [
        "alias.example.test.",
        "foo.child.example.test.",
        "nx.example.test.",
        "example.test.",
    ] {
        let mut c = case(name, if name == "example.test." { AXFR } else { A });
        c.tcp = true;
        c.label = format!("{} over TCP", c.label);
        v.push(c);
    }
    v
}

/// The comparable content of a response.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Shape {
    rcode: u16,
    aa: bool,
    tc: bool,
    rd: bool,
    ra: bool,
    cd: bool,
    questions: usize,
    edns: Option<(u8, bool, u16)>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

fn section(rs: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name.to_ascii().to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            )
        })
        .collect();
    v.sort();
    v
}

fn shape(m: &Message) -> Shape {
    Shape {
        rcode: u16::from(m.response_code),
        aa: m.authoritative,
        tc: m.truncation,
        rd: m.recursion_desired,
        ra: m.recursion_available,
        cd: m.checking_disabled,
        questions: m.queries.len(),
        edns: m
            .edns
            .as_ref()
            .map(|e| (e.version(), e.flags().dnssec_ok, e.max_payload())),
        answer: section(&m.answers),
        authority: section(&m.authorities),
        additional: section(&m.additionals),
    }
}

/// How many distinct (owner, type) RRsets a normalized section holds.
fn rrsets(section: &[String]) -> usize {
    let mut keys: Vec<String> = section
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            format!("{} {}", f[0], f[2])
        })
        .collect();
    keys.dedup();
    keys.len()
}

async fn ask(server: SocketAddr, c: &Case) -> Option<Shape> {
    if c.tcp {
        return Some(shape(&tcp(server, &c.msg).await));
    }
    let b = udp_raw(server, &c.msg.to_vec().unwrap(), Duration::from_secs(2)).await?;
    Some(shape(&Message::from_vec(&b).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_answers_match_knot_and_nsd() {
    let zone = repo().join("zones/example.test.zone");
    let zones = tempfile::tempdir().unwrap();
    std::fs::copy(&zone, zones.path().join("example.test.zone")).unwrap();
    let gtmd = start("", zones.path()).await;
    let knot = start_reference("knot", &zone).await;
    let nsd = start_reference("nsd", &zone).await;
    let mut failures = Vec::new();
    let cases = cases();
    for c in &cases {
        let ours = ask(gtmd.dns, c).await;
        for r in [&knot, &nsd] {
            let theirs = ask(r.addr, c).await;
            let (Some(o), Some(t)) = (&ours, &theirs) else {
                if ours.is_some() != theirs.is_some() {
                    failures.push(format!(
                        "{}: gtmd answered {} but {} answered {}",
                        c.label,
                        ours.is_some(),
                        r.name,
                        theirs.is_some()
                    ));
                }
                continue;
            };
            let mut o = o.clone();
            let mut t = t.clone();
            if r.name == "knot"
                && t.rcode == 9
                && o.rcode == 5
                && c.msg.queries[0].query_type() == RecordType::AXFR
            {
                // A refused transfer: Knot says NOTAUTH, NSD (and gtmd) REFUSED.
                t.rcode = 5;
            }
            if r.name == "nsd" {
                use RecordType::{NSEC, NSEC3, RRSIG};
                let positive = o.aa && !o.answer.is_empty() && o.rcode == 0;
                if positive {
                    // NSD also adds the apex NS set and its addresses.
                    o.authority.clear();
                    t.authority.clear();
                    o.additional.clear();
                    t.additional.clear();
                }
                if c.msg.queries[0].query_type() == RecordType::ANY {
                    // RFC 8482 lets each server pick the one RRset; compare how many.
                    o.answer = vec![format!("{} rrsets", rrsets(&o.answer))];
                    t.answer = vec![format!("{} rrsets", rrsets(&t.answer))];
                    o.additional.clear();
                    t.additional.clear();
                }
                let qclass = c.msg.queries[0].query_class();
                if qclass == DNSClass::ANY {
                    // NSD clears AA on a QCLASS ANY answer; Knot (and gtmd) keep it.
                    t.aa = o.aa;
                }
                let qtype = c.msg.queries[0].query_type();
                if qtype == RecordType::ZERO {
                    // NSD answers QTYPE 0 as any unknown type; Knot (and gtmd) NOTIMP.
                    continue;
                }
                if matches!(qtype, RRSIG | NSEC | NSEC3) {
                    // At a CNAME owner NSD gives the CNAME beside NODATA for RRSIG and NSEC,
                    // and a bare NODATA for NSEC3. gtmd answers as Knot: NODATA at the owner
                    // for RRSIG and NSEC (they live beside a CNAME, RFC 4035 section 2.5),
                    // the CNAME followed for NSEC3.
                    continue;
                }
                if c.msg.op_code != OpCode::Query {
                    // NSD's NOTIMP omits the question and OPT; Knot keeps both.
                    t.questions = o.questions;
                    t.edns = o.edns;
                }
            }
            if o != t {
                failures.push(format!(
                    "{} vs {}:\n  gtmd: {o:?}\n  {}: {t:?}",
                    c.label, r.name, r.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_what_knot_or_nsd_gives() {
    let zone = repo().join("zones/example.test.zone");
    let gtmd = start("", &repo().join("zones")).await;
    let knot = start_reference("knot", &zone).await;
    let nsd = start_reference("nsd", &zone).await;
    let good = query_msg("www.example.test.", RecordType::A, true)
        .to_vec()
        .unwrap();
    let mut no_question = good[..12].to_vec();
    no_question[5] = 0;
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut response = good.clone();
    response[2] |= 0x80;
    let cut_question = good[..20].to_vec();
    // Two whole questions and a valid OPT: FORMERR, with an OPT (RFC 6891 section 6.1.1).
    let mut two = query_msg("www.example.test.", RecordType::A, true);
    two.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("mail.example.test.").unwrap(),
        RecordType::A,
    ));
    two.metadata.recursion_desired = true;
    let two_with_opt = two.to_vec().unwrap();
    let mut none = query_msg("www.example.test.", RecordType::A, true);
    none.queries.clear();
    none.metadata.recursion_desired = true;
    let no_question_opt = none.to_vec().unwrap();
    let mut bad_label = good.clone();
    bad_label[12] = 0xc0; // a compression pointer in the question pointing at itself
    bad_label[13] = 12;
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("3 bytes", vec![1, 2, 3]),
        ("header only, QDCOUNT 0", no_question),
        ("QDCOUNT 2, one question", two_questions),
        ("QR set", response),
        ("two questions, RD and a valid OPT", two_with_opt.clone()),
        ("question cut short", cut_question),
        ("pointer loop in the name", bad_label),
        (
            "opcode STATUS, nine long questions (a fuzzer's find)",
            std::fs::read(repo().join("fuzz/corpus/query/found-many-questions-over-512")).unwrap(),
        ),
    ];
    let mut failures = Vec::new();
    for (label, bytes) in &inputs {
        let ours = udp_raw(gtmd.dns, bytes, Duration::from_millis(500)).await;
        let k = udp_raw(knot.addr, bytes, Duration::from_millis(500)).await;
        let n = udp_raw(nsd.addr, bytes, Duration::from_millis(500)).await;
        let rc = |b: &Option<Vec<u8>>| b.as_ref().map(|b| b[3] & 0x0f);
        let shape = |b: &Option<Vec<u8>>| b.as_ref().map(|b| (b.len(), b[5], b[2] & 2 != 0));
        eprintln!(
            "{label}: gtmd {:?} {:?} knot {:?} {:?} nsd {:?} {:?}",
            rc(&ours),
            shape(&ours),
            rc(&k),
            shape(&k),
            rc(&n),
            shape(&n)
        );
        if ours.as_ref().is_some_and(|b| b.len() > 512) {
            failures.push(format!(
                "{label}: a {}-byte response to a query without EDNS",
                ours.as_ref().map_or(0, Vec::len)
            ));
        }
        if rc(&ours) != rc(&k) && rc(&ours) != rc(&n) {
            failures.push(format!(
                "{label}: gtmd rcode {:?}, knot {:?}, nsd {:?}",
                rc(&ours),
                rc(&k),
                rc(&n)
            ));
        }
    }
    // FORMERR to a query with a valid OPT carries one (RFC 6891 section 6.1.1), as Knot's
    // does; for two questions RD is cleared as NSD clears it (Knot drops that message), for
    // none it is copied as Knot copies it (NSD answers NOERROR there).
    let parsed = |b: Option<Vec<u8>>| b.map(|b| Message::from_vec(&b).unwrap());
    for (label, bytes) in [
        ("two questions", &two_with_opt),
        ("no question", &no_question_opt),
    ] {
        let ours = parsed(udp_raw(gtmd.dns, bytes, Duration::from_secs(1)).await)
            .unwrap_or_else(|| panic!("{label}: no answer from gtmd"));
        let k = parsed(udp_raw(knot.addr, bytes, Duration::from_secs(1)).await);
        let n = parsed(udp_raw(nsd.addr, bytes, Duration::from_secs(1)).await);
        eprintln!("{label} with OPT: gtmd {ours:?}\n  knot {k:?}\n  nsd {n:?}");
        if ours.response_code != hickory_proto::op::ResponseCode::FormErr || ours.edns.is_none() {
            failures.push(format!(
                "{label} with OPT: gtmd {ours:?}, want FORMERR with OPT"
            ));
        }
        if let Some(k) = k
            .as_ref()
            .filter(|k| k.edns.is_some() != ours.edns.is_some())
        {
            failures.push(format!("{label} with OPT: gtmd {ours:?}, knot {k:?}"));
        }
        let rd_from = if label == "two questions" { n } else { k };
        if let Some(r) = rd_from.filter(|r| r.recursion_desired != ours.recursion_desired) {
            failures.push(format!("{label}: RD: gtmd {ours:?}, reference {r:?}"));
        }
    }
    // The server is still answering after all of that.
    let m = udp(
        gtmd.dns,
        &query_msg("www.example.test.", RecordType::A, true),
    )
    .await;
    assert_eq!(addrs(&m), vec!["192.0.2.80"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Over UDP, no answer is longer than Knot's: names in answers (owners, and the names in NS,
/// CNAME, PTR, MX and SOA data) are compressed as Knot compresses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_answers_are_no_longer_than_knots() {
    let zone = repo().join("zones/example.test.zone");
    let zones = tempfile::tempdir().unwrap();
    std::fs::copy(&zone, zones.path().join("example.test.zone")).unwrap();
    let gtmd = start("", zones.path()).await;
    let knot = start_reference("knot", &zone).await;
    let mut differ = Vec::new();
    let (mut compared, mut equal) = (0, 0);
    for c in cases()
        .iter()
        .filter(|c| !c.tcp && c.msg.op_code == OpCode::Query)
    {
        let q = c.msg.to_vec().unwrap();
        let ours = udp_raw(gtmd.dns, &q, Duration::from_secs(2)).await;
        let theirs = udp_raw(knot.addr, &q, Duration::from_secs(2)).await;
        if let (Some(o), Some(t)) = (ours, theirs) {
            compared += 1;
            // Knot leaves some names in CNAME chains uncompressed that gtmd compresses.
            if o.len() > t.len() {
                differ.push(format!(
                    "{}: gtmd {} bytes, knot {}",
                    c.label,
                    o.len(),
                    t.len()
                ));
            }
            equal += usize::from(o.len() == t.len());
        }
    }
    assert!(compared > 40, "{compared}");
    println!("{equal} of {compared} answers as long as Knot's, the others shorter");
    assert!(
        differ.is_empty(),
        "{} of {compared}:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
