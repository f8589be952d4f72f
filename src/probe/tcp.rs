//! The TCP check, and the connection every check starts with: a fresh connection that, once
//! done, is closed with a reset (SO_LINGER 0) so that thousands of probes a second leave no
//! TIME_WAIT sockets behind, as HAProxy's checks do.

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Opens a fresh connection to `target`, from `source` when given; the caller bounds the
/// time.
pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let sock = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let sock = sock.map_err(|e| format!("socket: {e}"))?;
    sock.set_zero_linger().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    sock.connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))
}

/// The TCP check: a connection that completes is a success. Nothing is sent.
pub async fn probe(target: SocketAddr, source: Option<IpAddr>) -> Result<(), String> {
    connect(target, source).await.map(drop)
}
