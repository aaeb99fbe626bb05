//! A TCP echo backend, optionally behind TLS, standing in for the upstream
//! conformance suite's `tcp-backend` (its echo server in TCP mode) in tests
//! and the conformance runner.
//!
//! The protocol, one line each way (`\n`-terminated):
//!
//! - on connect (after the TLS handshake, with TLS) the server sends a
//!   greeting: `HELLO <pod> <namespace>`;
//! - `PING` → `PONG`;
//! - `IS_TLS` → `true` or `false`;
//! - `TEST` → one line of JSON: `{"pod", "namespace", "service", "tls",
//!   "sni", "tlsProtocol"}` (the last two `null` without TLS);
//! - any other line is sent back as it came.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::echo::EchoIdentity;

/// The answer to `TEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpEchoed {
    /// The pod name.
    pub pod: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The SNI the client sent, with TLS.
    pub sni: Option<String>,
    /// `TLSv1_3`, `TLSv1_2`, with TLS.
    pub tls_protocol: Option<String>,
}

/// A running TCP echo server. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct TcpEchoServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpEchoServer {
    /// Binds `bind` and serves; with `tls`, every connection starts with a
    /// TLS handshake.
    pub async fn start(
        identity: EchoIdentity,
        bind: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<TcpEchoServer> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let identity = Arc::new(identity);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let identity = identity.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => serve(stream, &identity, None).await,
                        Some(a) => {
                            let Ok(tls) = a.accept(stream).await else {
                                return;
                            };
                            let (_, conn) = tls.get_ref();
                            let info = (
                                conn.server_name().map(str::to_owned),
                                conn.protocol_version().map(|v| format!("{v:?}")),
                            );
                            serve(tls, &identity, Some(info)).await;
                        }
                    }
                });
            }
        });
        Ok(TcpEchoServer { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpEchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server configuration presenting one certificate (for example one
/// read with [`crate::certs::certified_key`]).
pub fn tls_config(
    key: rustls::sign::CertifiedKey,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = crate::certs::crypto_provider();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Always(Arc::new(key))));
    Ok(Arc::new(cfg))
}

/// Presents one certificate whatever the SNI.
#[derive(Debug)]
struct Always(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Always {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

async fn serve<S>(stream: S, id: &EchoIdentity, tls: Option<(Option<String>, Option<String>)>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r).lines();
    if w.write_all(format!("HELLO {} {}\n", id.pod, id.namespace).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.trim_end_matches('\r') {
            "PING" => "PONG".to_owned(),
            "IS_TLS" => tls.is_some().to_string(),
            "TEST" => serde_json::to_string(&TcpEchoed {
                pod: id.pod.clone(),
                namespace: id.namespace.clone(),
                service: id.service.clone(),
                tls: tls.is_some(),
                sni: tls.as_ref().and_then(|t| t.0.clone()),
                tls_protocol: tls.as_ref().and_then(|t| t.1.clone()),
            })
            .unwrap_or_default(),
            other => other.to_owned(),
        };
        if w.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}
