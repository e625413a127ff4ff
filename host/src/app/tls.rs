//! HTTPS on the listener: rustls with the aws-lc-rs provider, a certificate
//! and key from PEM files that SIGHUP reloads without closing the listener
//! (each handshake asks for the current pair), and handshakes run beside each
//! other so a slow or silent client holds up only its own connection.

use crate::config::TlsConfig;
use crate::sync::{read, write};
use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake is done, waiting for the HTTP server to take them.
const HANDSHAKEN_QUEUE: usize = 64;

/// The one provider sluice serves TLS with: aws-lc-rs, which the AWS SDK
/// builds anyway. Given explicitly, so no process-wide default is installed
/// (reqwest's clients keep choosing theirs).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate and key the listener presents, read from `[server.tls]`'s
/// files at start and again on [`ServerCertificate::reload`].
#[derive(Debug)]
pub struct ServerCertificate {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCertificate {
    /// Read the pair; an error says which file is wrong and how.
    pub fn load(files: &TlsConfig) -> anyhow::Result<Arc<Self>> {
        let provider = provider();
        let current = RwLock::new(read_pair(files, &provider)?);
        Ok(Arc::new(ServerCertificate { files: files.clone(), provider, current }))
    }

    /// Read the files again. On an error the pair in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let pair = read_pair(&self.files, &self.provider)?;
        *write(&self.current) = pair;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.current).clone())
    }
}

fn read_pair(files: &TlsConfig, provider: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
    let (cert, key) = (files.cert.display(), files.key.display());
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate chain {cert} (server.tls.cert)"))?;
    anyhow::ensure!(!chain.is_empty(), "{cert} (server.tls.cert) holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    let private = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the TLS private key {key} (server.tls.key): a PKCS#8, PKCS#1 or SEC1 PEM key is expected"))?;
    let pair = CertifiedKey::from_der(chain, private, provider)
        .with_context(|| format!("the private key {key} does not go with the certificate {cert} (server.tls.key and server.tls.cert)"))?;
    Ok(Arc::new(pair))
}

/// Reload the certificate on every SIGHUP, for as long as the task runs.
pub fn reload_on_sighup(certificate: Arc<ServerCertificate>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler (TLS certificate reload)")?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let certificate = certificate.clone();
            match tokio::task::spawn_blocking(move || certificate.reload()).await {
                Ok(Ok(())) => tracing::info!("SIGHUP: reloaded the TLS certificate and key; new connections get them"),
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "SIGHUP: the new TLS certificate or key did not load; still serving the previous one"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: reloading the TLS certificate failed; still serving the previous one"),
            }
        }
    }))
}

/// The listener's TCP connections after their TLS handshake, as
/// `axum::serve` takes them. Dropping it stops accepting.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, certificate: Arc<ServerCertificate>) -> anyhow::Result<Self> {
        let local = tcp.local_addr()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(certificate);
        // The server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (done, handshaken) = mpsc::channel(HANDSHAKEN_QUEUE);
        let accepting = tokio::spawn(accept(tcp, TlsAcceptor::from(Arc::new(config)), done));
        Ok(TlsListener { handshaken, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task ended (it does not, but for a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accept TCP connections and shake hands with each on a task of its own.
async fn accept(tcp: TcpListener, acceptor: TlsAcceptor, done: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // As axum does: a connection that failed before it was accepted
                // is the client's business; anything else (too many open files)
                // gets a pause before the next try.
                if !matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                    tracing::error!(error = %e, "accepting a connection failed; trying again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let (acceptor, done) = (acceptor.clone(), done.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = done.send((tls, peer)).await;
                }
                // A client that does not trust the certificate, a port scanner: not the server's failure.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
