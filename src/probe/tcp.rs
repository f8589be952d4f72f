//! The TCP check: a connection that completes is a success. Nothing is sent.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Connects to `target` once; the caller bounds the time.
pub async fn probe(target: SocketAddr) -> Result<(), String> {
    TcpStream::connect(target)
        .await
        .map(drop)
        .map_err(|e| format!("connect {target}: {e}"))
}
