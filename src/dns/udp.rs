//! Batched UDP serving: one OS thread per SO_REUSEPORT socket, receiving up to [`BATCH`]
//! datagrams per `recvmmsg(2)` and sending the answers with one `sendmmsg(2)`. Buffers are
//! allocated once per thread; a query costs no allocation on the fast path and no task spawn.
//!
//! Each batch loads the published snapshot once (no lock). A receive timeout lets the thread
//! see the stop signal within `POLL`.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::dns::rrl::Verdict;
use crate::dns::{self, Answered, Published, Transport};

/// Datagrams handled per system call.
pub const BATCH: usize = 32;
/// The largest query read; a longer datagram is cut and answered FORMERR.
const RECV_BUF: usize = 4096;
/// How often a blocked thread looks at the stop signal.
const POLL: Duration = Duration::from_millis(100);

/// The receive buffer asked for each UDP socket, bytes.
const RECV_BUFFER: usize = 4 << 20;

/// Binds `count` UDP sockets to `addr` with SO_REUSEPORT so the kernel spreads queries over
/// them. With port 0, all take the port the first one was given.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut out: Vec<UdpSocket> = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        if at.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_port(true)?;
        omit_path_mtu(&s, at.is_ipv6())?;
        // Room for a burst (of junk, say) without the kernel dropping queries behind it; the
        // kernel caps it at net.core.rmem_max.
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
        s.bind(&at.into())?;
        s.set_read_timeout(Some(POLL))?;
        let s: UdpSocket = s.into();
        at = s.local_addr()?;
        out.push(s);
    }
    Ok(out)
}

/// Sends without the DF bit and ignores path-MTU information, so a forged ICMP "fragmentation
/// needed" cannot make the server fragment its answers (IP_PMTUDISC_OMIT, as gdnsd and Knot
/// set it).
fn omit_path_mtu(s: &Socket, v6: bool) -> io::Result<()> {
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_OMIT,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_OMIT,
        )
    };
    // SAFETY: a plain integer option on a socket we own; the length matches the value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Serves `sock` on a new thread until `stop` is cancelled.
pub fn spawn(
    sock: UdpSocket,
    published: Published,
    stop: CancellationToken,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gtmd-udp".into())
        .spawn(move || serve(&sock, &published, &stop))
}

/// Per-thread receive and send state, allocated once.
struct Batch {
    bufs: Vec<[u8; RECV_BUF]>,
    addrs: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    out: Vec<Vec<u8>>,
    out_iov: Vec<libc::iovec>,
    out_msgs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Box<Self> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero is
        // a valid value; the pointers in them are set before every system call.
        let zero_addr: libc::sockaddr_storage = unsafe { zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let zero_msg: libc::mmsghdr = unsafe { zeroed() };
        Box::new(Self {
            bufs: vec![[0u8; RECV_BUF]; BATCH],
            addrs: vec![zero_addr; BATCH],
            iov: vec![zero_iov; BATCH],
            msgs: vec![zero_msg; BATCH],
            out: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
            out_iov: vec![zero_iov; BATCH],
            out_msgs: vec![zero_msg; BATCH],
        })
    }

    /// Receives up to BATCH datagrams, waiting for at least one (or the timeout).
    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every msghdr points at a live buffer, address and iovec owned by `self`, which
        // outlives the call; the count equals the array length.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Sends the answers in `out[i]` for the `ready` received datagrams that have one.
    fn send(&mut self, fd: i32, ready: &[usize]) {
        for (j, &i) in ready.iter().enumerate() {
            self.out_iov[j] = libc::iovec {
                iov_base: self.out[i].as_mut_ptr().cast(),
                iov_len: self.out[i].len(),
            };
            let h = &mut self.out_msgs[j].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.msgs[i].msg_hdr.msg_namelen;
            h.msg_iov = &mut self.out_iov[j];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut sent = 0usize;
        while sent < ready.len() {
            // SAFETY: entries sent..ready.len() point at live buffers and addresses in `self`.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.out_msgs[sent..].as_mut_ptr(),
                    (ready.len() - sent) as u32,
                    0,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::debug!(error = %e, "udp send");
                // Skip the datagram that failed (e.g. an unreachable destination), keep the rest.
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}

fn serve(sock: &UdpSocket, published: &Published, stop: &CancellationToken) {
    let fd = sock.as_raw_fd();
    let mut b = Batch::new();
    let mut ready = Vec::with_capacity(BATCH);
    let mut counts = crate::base::metrics::QueryCounts::new("udp");
    while !stop.is_cancelled() {
        let n = match b.recv(fd) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                counts.maybe_flush(true);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "udp receive");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let snap = published.load();
        ready.clear();
        for i in 0..n {
            let len = b.msgs[i].msg_len as usize;
            let query = &b.bufs[i][..len.min(RECV_BUF)];
            let out = &mut b.out[i];
            // Never answer to port 0: it is a spoofed or broken source.
            if port_of(&b.addrs[i]) == 0 {
                continue;
            }
            let Some(src) = to_socket_addr(&b.addrs[i]) else {
                continue;
            };
            let ip = src.ip().to_canonical();
            let timed = counts.sample().then(std::time::Instant::now);
            let answered = dns::answer(&snap, query, ip, Transport::Udp, out);
            // An answer signed per query was judged before it was signed (and left unsigned
            // unless sent): that verdict stands.
            let judged = crate::dns::rrl::take_judged();
            if !matches!(answered, Answered::One) {
                continue;
            }
            if let Some(t) = timed {
                counts.record_latency(t.elapsed());
            }
            if let Some(rrl) = &snap.rrl {
                match judged.unwrap_or_else(|| rrl.judge(ip, out, &mut counts.slips)) {
                    Verdict::Send => {}
                    Verdict::Slip if crate::dns::rrl::truncate(out) => counts.rrl[0] += 1,
                    Verdict::Slip | Verdict::Drop => {
                        counts.rrl[1] += 1;
                        continue;
                    }
                }
            }
            ready.push(i);
            counts.count(out);
        }
        if let Some(rrl) = &snap.rrl {
            rrl.upkeep();
        }
        if !ready.is_empty() {
            b.send(fd, &ready);
        }
        counts.maybe_flush(false);
    }
}

/// The source port of a datagram (at the same offset in sockaddr_in and sockaddr_in6).
fn port_of(s: &libc::sockaddr_storage) -> u16 {
    // SAFETY: sockaddr_storage is at least 4 bytes past the family field.
    let bytes: &[u8; 4] = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
    u16::from_be_bytes([bytes[2], bytes[3]])
}

/// The address a datagram came from.
fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in here (family AF_INET); storage is larger.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6 and AF_INET6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}
