//! The ICMP check: `count` echo requests per probe, 10 ms apart, over an unprivileged ICMP
//! datagram socket (`SOCK_DGRAM`/`IPPROTO_ICMP`, allowed to the groups in
//! `net.ipv4.ping_group_range`), or else a raw socket (which needs `CAP_NET_RAW`). The probe
//! fails when more echoes than allowed go unanswered before its deadline, or when the
//! average round trip of those answered is above the check's `max_rtt`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::config::{IcmpCheck, ICMP_SPACING};

/// Echo request and reply types, ICMP and ICMPv6.
const ECHO_V4: (u8, u8) = (8, 0);
const ECHO_V6: (u8, u8) = (128, 129);

/// Sends `c.count` echoes to `target` (from `source`) and judges the replies that arrive
/// within `within`; on success, the average round trip of the echoes answered (what
/// `max_rtt` is held to).
pub async fn probe(
    target: IpAddr,
    source: Option<IpAddr>,
    c: &IcmpCheck,
    within: Duration,
) -> Result<Duration, String> {
    let (sock, raw) = open(target, source)?;
    let (request, reply) = if target.is_ipv4() { ECHO_V4 } else { ECHO_V6 };
    // A datagram socket's identifier is its own (the kernel sets it); a raw socket's is ours.
    let ident: u16 = rand::random();
    let count = c.count as usize;
    let deadline = tokio::time::Instant::now() + within;
    let mut sent: Vec<Option<Instant>> = vec![None; count];
    let mut rtts: Vec<Option<Duration>> = vec![None; count];
    let mut next = 0usize;
    let mut next_at = tokio::time::Instant::now();
    let mut buf = [0u8; 1500];
    while rtts.iter().any(Option::is_none) {
        tokio::select! {
            _ = tokio::time::sleep_until(next_at), if next < count => {
                let packet = echo(request, ident, next as u16, target.is_ipv4());
                sock.send(&packet)
                    .await
                    .map_err(|e| format!("echo to {target}: {e}"))?;
                sent[next] = Some(Instant::now());
                next += 1;
                next_at += ICMP_SPACING;
            }
            r = sock.recv(&mut buf) => {
                let n = r.map_err(|e| format!("echo reply from {target}: {e}"))?;
                let skip = if raw && target.is_ipv4() { usize::from(buf[0] & 0x0f) * 4 } else { 0 };
                if let Some(seq) = buf.get(skip..n).and_then(|m| reply_seq(m, reply, raw.then_some(ident))) {
                    let seq = usize::from(seq);
                    if let (Some(Some(at)), Some(slot @ None)) = (sent.get(seq), rtts.get_mut(seq)) {
                        *slot = Some(at.elapsed());
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    judge(c, &rtts, within)
}

/// Whether the replies in `rtts` (None: unanswered) pass the check; if so, their average
/// round trip.
fn judge(c: &IcmpCheck, rtts: &[Option<Duration>], within: Duration) -> Result<Duration, String> {
    let answered: Vec<Duration> = rtts.iter().flatten().copied().collect();
    let lost = rtts.len() - answered.len();
    if lost as u32 > c.max_lost {
        return Err(format!(
            "{lost} of {} echoes unanswered within {within:?} (at most {} may be)",
            rtts.len(),
            c.max_lost
        ));
    }
    let avg = answered.iter().sum::<Duration>() / answered.len().max(1) as u32;
    match c.max_rtt {
        Some(max) if avg > max => Err(format!(
            "average round trip {avg:?} is above max_rtt {max:?}"
        )),
        _ => Ok(avg),
    }
}

/// An ICMP socket connected to `target`: a datagram one if the kernel allows it to this
/// process, else a raw one; and whether it is raw.
fn open(target: IpAddr, source: Option<IpAddr>) -> Result<(UdpSocket, bool), String> {
    let (domain, proto) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(dgram) => match Socket::new(domain, Type::RAW, Some(proto)) {
            Ok(s) => (s, true),
            Err(e) => {
                return Err(format!(
                    "cannot open an ICMP socket ({dgram}; raw: {e}): add gtmd's group to \
                     net.ipv4.ping_group_range, or give it CAP_NET_RAW"
                ))
            }
        },
    };
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    sock.connect(&SocketAddr::new(target, 0).into())
        .map_err(|e| format!("echo to {target}: {e}"))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    let sock =
        UdpSocket::from_std(std::net::UdpSocket::from(sock)).map_err(|e| format!("socket: {e}"))?;
    Ok((sock, raw))
}

/// An echo request: type, code 0, checksum, identifier, sequence, and 8 bytes of payload.
/// ICMPv6's checksum covers a pseudo-header the kernel adds: it fills it in.
fn echo(kind: u8, ident: u16, seq: u16, v4: bool) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = kind;
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"gtmdping");
    if v4 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The sequence number of an echo reply of type `reply` (and identifier `ident`, if given).
fn reply_seq(m: &[u8], reply: u8, ident: Option<u16>) -> Option<u16> {
    if m.len() < 8 || m[0] != reply {
        return None;
    }
    if ident.is_some_and(|i| u16::from_be_bytes([m[4], m[5]]) != i) {
        return None;
    }
    Some(u16::from_be_bytes([m[6], m[7]]))
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_a_packet_with_its_checksum_is_zero() {
        let p = echo(8, 0x1234, 7, true);
        assert_eq!(checksum(&p), 0);
        assert_eq!(
            reply_seq(&[0, 0, 0, 0, 0x12, 0x34, 0, 7], 0, Some(0x1234)),
            Some(7)
        );
        assert_eq!(
            reply_seq(&[0, 0, 0, 0, 0x12, 0x35, 0, 7], 0, Some(0x1234)),
            None
        );
        assert_eq!(reply_seq(&[8, 0, 0, 0, 0x12, 0x34, 0, 7], 0, None), None);
    }

    #[test]
    fn loss_and_round_trip_judge_a_probe() {
        let c = IcmpCheck {
            count: 3,
            max_lost: 1,
            max_rtt: Some(Duration::from_millis(50)),
        };
        let ms = |n| Some(Duration::from_millis(n));
        let w = Duration::from_millis(500);
        assert!(judge(&c, &[ms(10), None, ms(20)], w).is_ok());
        let e = judge(&c, &[ms(10), None, None], w).unwrap_err();
        assert!(e.starts_with("2 of 3 echoes unanswered"), "{e}");
        let e = judge(&c, &[ms(10), ms(100), ms(100)], w).unwrap_err();
        assert!(e.contains("above max_rtt 50ms"), "{e}");
    }

    #[tokio::test]
    async fn loopback_answers_echoes() {
        let c = IcmpCheck {
            count: 3,
            max_lost: 0,
            max_rtt: None,
        };
        // As root (the tests run as root): a raw socket, unless ping_group_range allows more.
        probe([127, 0, 0, 1].into(), None, &c, Duration::from_millis(500))
            .await
            .unwrap();
    }
}
