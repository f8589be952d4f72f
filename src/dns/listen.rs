//! The sockets of each DNS listen address: SO_REUSEPORT UDP sockets, one per core, served by
//! [`crate::dns::udp`] threads, and a TCP listener served by [`crate::dns::tcp`]. Sockets are
//! bound before the server starts (tests bind port 0), and served once DNS is ready.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dns::{tcp, udp, Published};

/// The sockets of one DNS listen address: SO_REUSEPORT UDP sockets and a TCP listener.
pub struct DnsListener {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: TcpListener,
}

impl DnsListener {
    /// Binds UDP (one socket per available core) and TCP on `addr`. With port 0, all get the
    /// same ephemeral port.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut last = None;
        for _ in 0..20 {
            let udp = udp::bind_reuseport(addr, threads)?;
            let port = udp[0].local_addr()?.port();
            match bind_tcp(SocketAddr::new(addr.ip(), port)) {
                Ok(tcp) => return Ok(Self { udp, tcp }),
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    /// The UDP address (the TCP listener has the same).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp[0].local_addr()
    }
}

/// A TCP listener on `addr`. An IPv6 socket serves IPv6 only (IPV6_V6ONLY), as the UDP
/// sockets do, so that `0.0.0.0:53` and `[::]:53` can be listened on side by side (as Knot and
/// NSD do); SO_REUSEADDR lets a restart bind again at once.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Starts the UDP threads and the TCP acceptor of one listener.
pub fn spawn(
    set: &mut JoinSet<()>,
    l: DnsListener,
    published: Published,
    stop: CancellationToken,
) -> std::io::Result<()> {
    for sock in l.udp {
        let handle = udp::spawn(sock, published.clone(), stop.clone())?;
        set.spawn_blocking(move || {
            let _ = handle.join();
        });
    }
    set.spawn(tcp::accept(l.tcp, published, stop));
    Ok(())
}
