//! The relay inside the jail: `127.0.0.1:<port>` (the only address the jailed command's
//! proxy variables name) to the session listener's Unix socket outside. Bytes are copied
//! both ways untouched; the session listener does all the work.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixStream};

/// Serves `listener` forever, relaying each connection to `socket`.
pub async fn serve(listener: TcpListener, socket: PathBuf) -> io::Result<()> {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("relay accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &socket).await {
                tracing::debug!("relay connection ended: {e}");
            }
        });
    }
}

/// Copies one connection both ways until either side closes.
async fn relay(mut client: TcpStream, socket: &Path) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut upstream = UnixStream::connect(socket).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_go_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let unix = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = unix.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase()))
                .await
                .unwrap();
        });
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(serve(tcp, path));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut out = [0u8; 4];
        c.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"PING");
    }
}
