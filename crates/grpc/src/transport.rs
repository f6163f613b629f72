//! The gRPC port's connections: plain TCP, TLS, or both on one port. A TLS client is told
//! from a plaintext one by its first byte (a TLS handshake record starts with 0x16; an HTTP/2
//! preface with `P`), so `switchyard dev` serves `buf curl --http2-prior-knowledge` and
//! mTLS agents side by side. Handshakes run off the accept loop, so a slow client delays no one.
//! Every connection carries a [`Peer`]: its address and the agent its client certificate
//! names.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use switchyard_auth::layer::Peer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// How long a new connection may take to send its first byte and finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// TLS on the gRPC port.
#[derive(Clone)]
pub struct Tls {
    /// The server configuration (certificate, key, optional client CA): see
    /// `switchyard_pki::server_config`.
    pub config: Arc<tokio_rustls::rustls::ServerConfig>,
    /// Whether plaintext connections are served too (`switchyard dev`).
    pub allow_plaintext: bool,
}

/// One accepted connection.
pub(crate) enum Conn {
    /// Plain TCP.
    Plain(TcpStream, Peer),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>, Peer),
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match self {
            Conn::Plain(_, peer) | Conn::Tls(_, peer) => peer.clone(),
        }
    }
}

/// The incoming connections of `listener`, TLS-terminated as `tls` says.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Option<Tls>,
) -> impl Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls.map(Arc::new), tx));
    ReceiverStream::new(rx)
}

/// Accepts until the server stops listening (drops the receiver).
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "gRPC accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let peer = Peer {
            addr: Some(addr),
            agent: None,
        };
        match &tls {
            None => {
                if tx.send(Ok(Conn::Plain(stream, peer))).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, open(stream, peer, &tls)).await {
                        Ok(Ok(Some(conn))) => {
                            // The server may have stopped meanwhile; then the connection closes.
                            let _ = tx.send(Ok(conn)).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%addr, "connection sent nothing in time"),
                    }
                });
            }
        }
    }
}

/// Terminates TLS on `stream`, or passes it through plain when allowed; `None` for a plaintext
/// connection that is not.
async fn open(stream: TcpStream, mut peer: Peer, tls: &Tls) -> io::Result<Option<Conn>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != TLS_HANDSHAKE {
        if tls.allow_plaintext {
            return Ok(Some(Conn::Plain(stream, peer)));
        }
        tracing::debug!(addr = ?peer.addr, "plaintext connection refused: this port serves TLS");
        return Ok(None);
    }
    let stream = TlsAcceptor::from(tls.config.clone()).accept(stream).await?;
    peer.agent = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| switchyard_pki::agent_identity(leaf));
    Ok(Some(Conn::Tls(Box::new(stream), peer)))
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
