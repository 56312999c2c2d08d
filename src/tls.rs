//! HTTPS: the certificate the server presents, from files (`tls_certs`, `tls_key`), reloaded
//! when they change, or from an ACME certificate authority (`acme_domains`), obtained at
//! start, renewed before expiry and kept beside the database.
//!
//! rustls, with TLS 1.2 and 1.3 only and HTTP/1.1 as the one application protocol. ACME is
//! rustls-acme's: it answers the authority's TLS-ALPN-01 challenge on the HTTPS port itself,
//! so no port 80 is needed, and renews when two thirds of a certificate's life have passed.

use std::fs::{DirBuilder, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::config::TlsSettings;
use crate::connections::{Connection, Tracked};
use crate::metrics::Metrics;

/// What a plain HTTP request to the HTTPS port gets before the connection is closed.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n\
X-Content-Type-Options: nosniff\r\nContent-Length: 75\r\nConnection: close\r\n\r\n\
{\"success\":\"false\",\"message\":\"This server speaks HTTPS only: use https://\"}";

/// How often the certificate files are looked at (two `stat`s) for a change, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What the listener needs to speak TLS.
pub enum Tls {
    /// From files, reloaded when they change.
    Files(Arc<ServerConfig>),
    /// From an ACME authority; `challenge` answers its TLS-ALPN-01 validation.
    Acme {
        config: Arc<ServerConfig>,
        challenge: Arc<ServerConfig>,
    },
}

/// The crypto every TLS config here uses: ring, as the rest of the binary does.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumed sessions skip the key exchange: clients that reconnect often pay less.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS: {e}"))?;
    Ok(config)
}

impl Tls {
    /// Loads the certificate files or starts the ACME client (on the current runtime).
    /// `state_dir`: where ACME keeps its account and certificates.
    pub fn start(settings: &TlsSettings, metrics: &Arc<Metrics>) -> Result<Tls, String> {
        match settings {
            TlsSettings::Files { certs, key } => {
                let resolver = FileCertificate::load(certs, key, Arc::clone(metrics))?;
                Ok(Tls::Files(Arc::new(server_config(Arc::new(resolver))?)))
            }
            TlsSettings::Acme {
                domains,
                email,
                directory,
                ca_root,
                cache,
            } => start_acme(
                domains,
                email.as_deref(),
                directory,
                ca_root.as_deref(),
                cache,
                metrics,
            ),
        }
    }

    /// The TLS handshake on a new connection. A TLS-ALPN-01 validation from the ACME
    /// authority is answered and ends there (`Ok(None)`), as does a plain HTTP request, which
    /// gets a 400 saying to use `https://` (as Caddy and nginx answer it).
    pub async fn accept(
        &self,
        mut stream: TcpStream,
        connection: Arc<Connection>,
        peer: SocketAddr,
    ) -> io::Result<Option<TlsStream<Tracked<TcpStream>>>> {
        // A TLS connection starts with a handshake record (22); a letter is plain HTTP.
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0].is_ascii_alphabetic() {
            log::debug!("{peer} sent plain HTTP to the HTTPS port");
            let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        let io = Tracked::new(stream, connection);
        match self {
            Tls::Files(config) => tokio_rustls::TlsAcceptor::from(Arc::clone(config))
                .accept(io)
                .await
                .map(Some),
            Tls::Acme { config, challenge } => {
                let start =
                    LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
                if rustls_acme::is_tls_alpn_challenge(&start.client_hello()) {
                    log::info!("answering the ACME authority's TLS-ALPN-01 validation");
                    let mut stream = start.into_stream(Arc::clone(challenge)).await?;
                    let _ = stream.shutdown().await;
                    return Ok(None);
                }
                start.into_stream(Arc::clone(config)).await.map(Some)
            }
        }
    }
}

/// The certificate and key from `tls_certs` and `tls_key`, looked at again at most once a
/// second (file size and modification time): a renewed certificate (certbot, or a copy from
/// a proxy) is served from the next handshake on, with no restart. A file that does not
/// parse, or a key that does not match, is logged and the last good pair stays in use.
struct FileCertificate {
    certs: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' identity when `current` (or the last failed attempt) was read.
    seen: Mutex<Option<Stamp>>,
    /// Milliseconds since 1970 of the last look at the files.
    looked: AtomicU64,
    metrics: Arc<Metrics>,
}

type Stamp = [(u64, i64, i64, u64); 2];

fn stamp(certs: &Path, key: &Path) -> Option<Stamp> {
    let one = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|meta| (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
    };
    Some([one(certs)?, one(key)?])
}

impl std::fmt::Debug for FileCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCertificate")
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

/// Reads a certificate chain and its key from PEM files, checking that they belong together.
fn read_pair(certs: &Path, key: &Path) -> Result<(CertifiedKey, u64), String> {
    let chain = CertificateDer::pem_file_iter(certs)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls_certs: {}: {e}", certs.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_certs: {}: no certificate (a PEM file with BEGIN CERTIFICATE)",
            certs.display()
        ));
    }
    // Never quoted: the error names the file only.
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "tls_key: {}: no private key could be read ({})",
            key.display(),
            match e {
                rustls::pki_types::pem::Error::Io(io) => io.to_string(),
                _ => "a PEM file with BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY is \
                      needed"
                    .to_owned(),
            }
        )
    })?;
    let expires = not_after(&chain[0]).unwrap_or(0);
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        format!(
            "tls_key: {} does not go with the certificate in {}: {e}",
            key.display(),
            certs.display()
        )
    })?;
    Ok((certified, expires))
}

/// Whether a certificate's `notBefore` is still ahead (a certificate issued for later, or a
/// clock behind).
fn not_yet_valid(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, cert)| u64::try_from(cert.validity().not_before.timestamp()).ok())
        .is_some_and(|from| from.saturating_mul(1000) > now_millis())
}

/// A certificate's `notAfter`, in seconds since 1970.
fn not_after(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    u64::try_from(cert.validity().not_after.timestamp()).ok()
}

impl FileCertificate {
    fn load(certs: &Path, key: &Path, metrics: Arc<Metrics>) -> Result<FileCertificate, String> {
        let seen = stamp(certs, key);
        let (certified, expires) = read_pair(certs, key)?;
        metrics.certificate_expires.store(expires, Relaxed);
        if not_yet_valid(&certified.cert[0]) {
            log::warn!(
                "the certificate in {} is not valid yet: clients will refuse it until its \
                 validity begins (is this machine's clock right?)",
                certs.display()
            );
        }
        if expired(expires) {
            log::warn!(
                "the certificate in {} expired on {}: clients will refuse it until it is \
                 renewed (the new files are read without a restart)",
                certs.display(),
                crate::clock::utc_seconds(expires)
            );
        } else {
            log::info!(
                "HTTPS with the certificate in {} (expires {})",
                certs.display(),
                crate::clock::utc_seconds(expires)
            );
        }
        Ok(FileCertificate {
            certs: certs.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(certified)),
            seen: Mutex::new(seen),
            looked: AtomicU64::new(now_millis()),
            metrics,
        })
    }

    /// Reads the files again if they changed since they were last read.
    fn refresh(&self) {
        let now = now_millis();
        let last = self.looked.load(Relaxed);
        let due = now.saturating_sub(last) >= RELOAD_CHECK.as_millis() as u64;
        if !due
            || self
                .looked
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let now_seen = stamp(&self.certs, &self.key);
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if *seen == now_seen {
            return;
        }
        // Remembered even when reading fails: one warning per change, not one per handshake.
        *seen = now_seen;
        if now_seen.is_none() {
            log::warn!(
                "the certificate file {} or its key {} is gone; still serving the one read \
                 before, but a restart will fail until they are back",
                self.certs.display(),
                self.key.display()
            );
            return;
        }
        let serving = self.metrics.certificate_expires.load(Relaxed);
        match read_pair(&self.certs, &self.key) {
            Ok((certified, expires))
                if (expired(expires) || not_yet_valid(&certified.cert[0])) && !expired(serving) =>
            {
                log::warn!(
                    "the certificate files changed, but the new certificate is not valid now \
                     (it expires {}, or its validity has not begun); still serving the one \
                     read before (valid until {})",
                    crate::clock::utc_seconds(expires),
                    crate::clock::utc_seconds(serving)
                );
            }
            Ok((certified, expires)) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(certified);
                }
                self.metrics.certificate_expires.store(expires, Relaxed);
                log::info!(
                    "reloaded the certificate in {} (expires {})",
                    self.certs.display(),
                    crate::clock::utc_seconds(expires)
                );
            }
            Err(error) => log::warn!(
                "the certificate files changed but could not be used ({error}); still serving \
                 the one read before"
            ),
        }
    }
}

impl ResolvesServerCert for FileCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        self.current.read().ok().map(|current| Arc::clone(&current))
    }
}

/// Whether a certificate whose `notAfter` is `expires` (seconds since 1970) has expired.
fn expired(expires: u64) -> bool {
    expires.saturating_mul(1000) < now_millis()
}

/// Checks the certificate settings before anything starts, so that a mistake is a
/// configuration error (exit 78, one line) rather than a failure after the database opened:
/// the files must be a matching pair; the ACME roots must parse and its folder be usable.
pub fn check(settings: &TlsSettings) -> Result<(), String> {
    match settings {
        TlsSettings::Files { certs, key } => read_pair(certs, key).map(|_| ()),
        TlsSettings::Acme { ca_root, cache, .. } => {
            if let Some(path) = ca_root {
                extra_roots(path)?;
            }
            AcmeCache::prepare(cache)
        }
    }
}

/// The certificates in `acme_ca_root`, at least one.
fn extra_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let extra = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("acme_ca_root: {}: {e}", path.display()))?;
    if extra.is_empty() {
        return Err(format!(
            "acme_ca_root: {}: no certificate (a PEM file with BEGIN CERTIFICATE)",
            path.display()
        ));
    }
    Ok(extra)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn start_acme(
    domains: &[String],
    email: Option<&str>,
    directory: &str,
    ca_root: Option<&Path>,
    cache: &Path,
    metrics: &Arc<Metrics>,
) -> Result<Tls, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_root {
        let (added, _) = roots.add_parsable_certificates(extra_roots(path)?);
        if added == 0 {
            return Err(format!(
                "acme_ca_root: {}: no certificate could be read",
                path.display()
            ));
        }
    }
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let cache = AcmeCache::open(cache, Arc::clone(metrics))?;
    let mut state = rustls_acme::AcmeConfig::new_with_client_config(domains, Arc::new(client))
        .contact(email.map(|email| format!("mailto:{email}")))
        .directory(directory)
        .cache(cache)
        .state();
    let mut config = server_config(state.resolver())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let challenge = state.challenge_rustls_config_with_provider(provider());
    log::info!(
        "HTTPS for {} with certificates from {directory}",
        domains.join(", ")
    );
    let directory = directory.to_owned();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(event) = state.next().await {
            match event {
                Ok(rustls_acme::EventOk::DeployedNewCert) => {
                    log::warn!(target: crate::logging::LAUNCH, "ACME: a new certificate is in use");
                }
                Ok(rustls_acme::EventOk::DeployedCachedCert) => {
                    log::info!("ACME: serving the certificate kept from before");
                }
                Ok(other) => log::debug!("ACME: {other:?}"),
                Err(error @ rustls_acme::EventError::CertCacheStore(_)) => log::error!(
                    "ACME: the new certificate could not be kept ({error}): it is served \
                     until the server stops, and the next start orders another (Let's \
                     Encrypt allows 5 for the same names a week): free the folder's disk"
                ),
                Err(error) => log::error!("ACME ({directory}): {error} (tried again later)"),
            }
        }
    });
    Ok(Tls::Acme {
        config: Arc::new(config),
        challenge,
    })
}

/// The ACME account key and certificates, in a folder only this user may enter (0700), each
/// file 0600, written whole (a temporary file renamed into place).
struct AcmeCache {
    folder: PathBuf,
    metrics: Arc<Metrics>,
}

impl AcmeCache {
    fn open(folder: &Path, metrics: Arc<Metrics>) -> Result<AcmeCache, String> {
        AcmeCache::prepare(folder)?;
        Ok(AcmeCache {
            folder: folder.to_owned(),
            metrics,
        })
    }

    /// Makes the folder (0700) if missing, refuses a link or a file in its place, and closes
    /// an existing folder and its files to other users.
    fn prepare(folder: &Path) -> Result<(), String> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| format!("acme: could not create {}: {e}", folder.display()))?;
        let meta = std::fs::symlink_metadata(folder)
            .map_err(|e| format!("acme: {}: {e}", folder.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "acme: {} is a symbolic link; the certificates' folder must be a real folder \
                 of this user's (it holds private keys)",
                folder.display()
            ));
        }
        if !meta.is_dir() {
            return Err(format!("acme: {} is not a folder", folder.display()));
        }
        // A folder made before, by hand or by an older version: close it and its files to
        // others (the account key and the certificates' keys).
        let private = |path: &Path, mode: u32| -> Result<(), String> {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                format!(
                    "acme: {}: {e} (the folder must belong to the user the server runs as)",
                    path.display()
                )
            })
        };
        if meta.permissions().mode() & 0o077 != 0 {
            private(folder, 0o700)?;
        }
        let entries =
            std::fs::read_dir(folder).map_err(|e| format!("acme: {}: {e}", folder.display()))?;
        for entry in entries.filter_map(Result::ok) {
            let is_open_file = entry.metadata().is_ok_and(|meta| {
                meta.file_type().is_file() && meta.permissions().mode() & 0o077 != 0
            });
            if is_open_file {
                private(&entry.path(), 0o600)?;
            }
        }
        Ok(())
    }

    fn file(&self, kind: &str, names: &[String], directory: &str) -> PathBuf {
        let mut digest = Sha256::new();
        for name in names {
            digest.update(name.as_bytes());
            digest.update([0]);
        }
        digest.update(directory.as_bytes());
        let digest = digest.finalize();
        let short: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.folder.join(format!("{kind}-{short}.pem"))
    }

    async fn read(path: PathBuf) -> io::Result<Option<Vec<u8>>> {
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn write(path: PathBuf, bytes: Vec<u8>) -> io::Result<()> {
        tokio::task::spawn_blocking(move || {
            let partial = path.with_extension("partial");
            let written = (|| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&partial)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                drop(file);
                std::fs::rename(&partial, &path)?;
                File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            written
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Notes the expiry of the certificate in `pem` (the key first, then the chain).
    fn note_expiry(&self, pem: &[u8]) {
        let leaf = x509_parser::pem::Pem::iter_from_buffer(pem)
            .filter_map(Result::ok)
            .find(|block| block.label == "CERTIFICATE");
        if let Some(expires) = leaf.and_then(|block| not_after(&block.contents)) {
            self.metrics.certificate_expires.store(expires, Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl rustls_acme::CertCache for AcmeCache {
    type EC = io::Error;
    async fn load_cert(&self, domains: &[String], directory: &str) -> io::Result<Option<Vec<u8>>> {
        let found = Self::read(self.file("certificate", domains, directory)).await?;
        if let Some(pem) = &found {
            self.note_expiry(pem);
        }
        Ok(found)
    }
    async fn store_cert(&self, domains: &[String], directory: &str, cert: &[u8]) -> io::Result<()> {
        self.note_expiry(cert);
        Self::write(self.file("certificate", domains, directory), cert.to_vec()).await
    }
}

#[async_trait::async_trait]
impl rustls_acme::AccountCache for AcmeCache {
    type EA = io::Error;
    async fn load_account(
        &self,
        contact: &[String],
        directory: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        let path = self.file("account", contact, directory);
        let Some(account) = Self::read(path.clone()).await? else {
            return Ok(None);
        };
        // The account key (PKCS#8). A damaged one would fail every order for ever: set it
        // aside and let a new account be made.
        let key = PrivateKeyDer::Pkcs8(account.clone().into());
        if rustls::crypto::ring::sign::any_ecdsa_type(&key).is_ok() {
            return Ok(Some(account));
        }
        let aside = path.with_extension("damaged");
        log::warn!(
            "ACME: the account key in {} cannot be read; it is moved to {} and a new account \
             is made",
            path.display(),
            aside.display()
        );
        tokio::fs::rename(&path, &aside).await?;
        Ok(None)
    }
    async fn store_account(
        &self,
        contact: &[String],
        directory: &str,
        account: &[u8],
    ) -> io::Result<()> {
        Self::write(self.file("account", contact, directory), account.to_vec()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (made.cert.pem(), made.key_pair.serialize_pem())
    }

    /// A self-signed certificate (PEM) valid from 1 January of `from` to that of `to`, and
    /// its key.
    fn dated(name: &str, from: i32, to: i32) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_a_key_that_do_not_match_are_refused_naming_the_files() {
        let folder = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed("a.example");
        let (_, other_key) = self_signed("b.example");
        let certs = folder.path().join("cert.pem");
        let key = folder.path().join("key.pem");
        std::fs::write(&certs, cert).unwrap();
        std::fs::write(&key, &other_key).unwrap();
        let error = read_pair(&certs, &key).unwrap_err();
        assert!(error.contains("does not go with"), "{error}");
        assert!(!error.contains("PRIVATE KEY-----"), "{error}");
    }

    #[test]
    fn changed_files_are_served_from_the_next_look_and_bad_ones_keep_the_old_pair() {
        let folder = tempfile::tempdir().unwrap();
        let certs = folder.path().join("cert.pem");
        let key = folder.path().join("key.pem");
        let (cert, private) = self_signed("first.example");
        std::fs::write(&certs, &cert).unwrap();
        std::fs::write(&key, &private).unwrap();
        let resolver = FileCertificate::load(&certs, &key, Arc::new(Metrics::new())).unwrap();
        let first = resolver.current.read().unwrap().cert[0].clone();

        let (cert, private) = self_signed("second.example");
        std::fs::write(&certs, &cert).unwrap();
        std::fs::write(&key, &private).unwrap();
        resolver.looked.store(0, Relaxed);
        resolver.refresh();
        let second = resolver.current.read().unwrap().cert[0].clone();
        assert_ne!(first, second, "the new certificate is in use");

        std::fs::write(&certs, "not a certificate").unwrap();
        resolver.looked.store(0, Relaxed);
        resolver.refresh();
        assert_eq!(resolver.current.read().unwrap().cert[0], second);
    }

    #[test]
    fn an_expired_certificate_does_not_replace_a_valid_one_and_missing_files_keep_the_pair() {
        let folder = tempfile::tempdir().unwrap();
        let certs = folder.path().join("cert.pem");
        let key = folder.path().join("key.pem");
        let (cert, private) = self_signed("valid.example");
        std::fs::write(&certs, &cert).unwrap();
        std::fs::write(&key, &private).unwrap();
        let resolver = FileCertificate::load(&certs, &key, Arc::new(Metrics::new())).unwrap();
        let valid = resolver.current.read().unwrap().cert[0].clone();

        let (old, old_key) = dated("old.example", 2020, 2021);
        std::fs::write(&certs, old).unwrap();
        std::fs::write(&key, old_key).unwrap();
        resolver.looked.store(0, Relaxed);
        resolver.refresh();
        assert_eq!(
            resolver.current.read().unwrap().cert[0],
            valid,
            "the expired one refused"
        );

        // Nor one whose validity has not begun.
        let (later, later_key) = dated("later.example", 2090, 2091);
        std::fs::write(&certs, later).unwrap();
        std::fs::write(&key, later_key).unwrap();
        resolver.looked.store(0, Relaxed);
        resolver.refresh();
        assert_eq!(
            resolver.current.read().unwrap().cert[0],
            valid,
            "not valid yet: refused"
        );

        std::fs::remove_file(&certs).unwrap();
        resolver.looked.store(0, Relaxed);
        resolver.refresh();
        assert_eq!(
            resolver.current.read().unwrap().cert[0],
            valid,
            "still served"
        );
    }
}
