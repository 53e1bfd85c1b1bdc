//! Opening a connection: the URL's TLS settings, several hosts, and the
//! server's warnings.
//!
//! Every connection of the service is opened here: the pools', the
//! migrator's and the startup check's. tokio-postgres parses `sslmode`
//! `disable`, `prefer` and `require` only and never verifies a certificate on
//! its own, so the URL's `sslmode` and `sslrootcert` are read here and turned
//! into a rustls configuration, as libpq reads them:
//!
//! | `sslmode` | TLS | certificate checked against the roots | host name checked |
//! |---|---|---|---|
//! | `disable` | never | | |
//! | `prefer` (default) | when the server offers it | no | no |
//! | `require` | always | only when `sslrootcert` is given (as libpq) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! The roots are the PEM file `sslrootcert` names, or the system's store when
//! it is absent (or `sslrootcert=system`). Several hosts
//! (`postgres://h1:5432,h2:5432/db?target_session_attrs=read-write`) are
//! tokio-postgres's own: it tries them in order and keeps the first that
//! accepts writes.
//!
//! The connection's messages are driven here rather than by diesel-async, so
//! that the server's warnings are seen: PostgreSQL answers a `COMMIT` whose
//! wait for a synchronous standby was cancelled (by `statement_timeout`, say)
//! as done, with only a warning. [`Connection::replicated_since`] tells a
//! caller whether any warning arrived since it last looked.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use futures_util::StreamExt as _;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::error::{Severity, SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, TargetError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(TargetError::Invalid(
                    "sslmode=allow is not supported; use prefer".into(),
                ));
            }
            other => {
                return Err(TargetError::Invalid(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A connection URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Invalid(String),
    #[error("sslrootcert {path:?}: {reason}")]
    RootCert { path: PathBuf, reason: String },
}

/// Where and how to connect: the parsed URL and its TLS configuration.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: SslMode,
    root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("hosts", &self.config.get_hosts())
            .field("sslmode", &self.mode)
            .field("sslrootcert", &self.root_cert)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Parses a `postgres://` URL, reading `sslmode` and `sslrootcert`
    /// itself (the rest is tokio-postgres's), and loads the roots.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = SslMode::parse(&percent_decode(value)?)?,
                "sslrootcert" => root_cert = Some(percent_decode(value)?),
                _ => kept.push(pair),
            }
        }
        // tokio-postgres negotiates TLS for `prefer` and `require`; the
        // verifying modes are `require` to it, with the checks below.
        let wire_mode = match mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        };
        kept.push(match wire_mode {
            "disable" => "sslmode=disable",
            "prefer" => "sslmode=prefer",
            _ => "sslmode=require",
        });
        let rebuilt = format!("{base}?{}", kept.join("&"));
        let config: tokio_postgres::Config = rebuilt
            .parse()
            .map_err(|e: tokio_postgres::Error| TargetError::Invalid(e.to_string()))?;
        // libpq: `require` with a root certificate behaves as `verify-ca`.
        let effective = match (mode, &root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        let root_cert = root_cert.filter(|path| path != "system").map(PathBuf::from);
        let verifier: Arc<dyn ServerCertVerifier> = match effective {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(NoVerification::new()),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = load_roots(root_cert.as_deref())?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
                    .build()
                    .map_err(|e| TargetError::Invalid(format!("building the certificate verifier: {e}")))?;
                if effective == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                }
            }
        };
        let tls = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TargetError::Invalid(format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            config,
            tls: MakeRustlsConnect::new(tls),
            mode: effective,
            root_cert,
        })
    }

    /// The `sslmode` in force (`require` with `sslrootcert` is `verify-ca`).
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The database the URL names.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The same servers and settings with another database.
    pub fn with_database(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(name);
        other
    }

    /// Opens a connection within `timeout` (for the whole of it: every host
    /// tried, TLS, authentication, diesel-async's set-up).
    pub async fn connect(&self, timeout: Duration) -> Result<Connection, ConnectError> {
        let mut config = self.config.clone();
        config.connect_timeout(timeout);
        let opened = async {
            let (client, connection) = config.connect(self.tls.clone()).await.map_err(|e| self.classify(&e))?;
            let warnings = Arc::new(AtomicU64::new(0));
            let (ended_tx, ended) = tokio::sync::watch::channel(());
            tokio::spawn(drive(connection, Arc::clone(&warnings), ended_tx));
            let conn = AsyncPgConnection::try_from(client)
                .await
                .map_err(|e| ConnectError::Unreachable(format!("setting up the connection: {e}")))?;
            Ok(Connection {
                conn,
                warnings,
                ended,
                lock_timeout_ms: AtomicU64::new(UNKNOWN_LOCK_TIMEOUT),
            })
        };
        tokio::time::timeout(timeout, opened)
            .await
            .unwrap_or_else(|_| Err(ConnectError::Unreachable(format!("no connection within {timeout:?}"))))
    }

    /// Sends a cancel request for the statement `token`'s connection runs,
    /// over the same TLS settings.
    pub(crate) async fn cancel(&self, token: tokio_postgres::CancelToken) -> Result<(), tokio_postgres::Error> {
        token.cancel_query(self.tls.clone()).await
    }

    fn classify(&self, error: &tokio_postgres::Error) -> ConnectError {
        if let Some(db) = error.as_db_error() {
            let transient = [
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::ADMIN_SHUTDOWN,
            ];
            return if transient.contains(db.code()) {
                ConnectError::Unreachable(db.message().to_owned())
            } else {
                ConnectError::Refused(format!("{} ({})", db.message(), db.code().code()))
            };
        }
        if let Some(tls) = rustls_error(error) {
            let roots = match &self.root_cert {
                Some(path) => format!("sslrootcert={}", path.display()),
                None => "the system's root certificates".to_owned(),
            };
            let hint = format!("sslmode={}, {roots}", self.mode.as_str());
            return ConnectError::Certificate(format!("{tls} ({hint})"));
        }
        let text = error.to_string();
        if text.contains("TLS") {
            return ConnectError::Certificate(format!("{text} (sslmode={})", self.mode.as_str()));
        }
        ConnectError::Unreachable(format!("{text}{}", source_text(error)))
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// TLS could not be set up: the certificate did not verify (wrong CA,
    /// wrong host name) or the server does not offer TLS. A configuration
    /// error: retrying will not help.
    #[error("TLS with the server failed: {0}")]
    Certificate(String),
    /// The server answered and refused the connection (no `pg_hba.conf`
    /// entry, wrong password, unknown database): its own message.
    #[error("the server refused the connection: {0}")]
    Refused(String),
    /// Nothing answered in time, or the server is starting or stopping.
    #[error("the server could not be reached: {0}")]
    Unreachable(String),
}

impl From<ConnectError> for diesel::ConnectionError {
    fn from(error: ConnectError) -> Self {
        diesel::ConnectionError::BadConnection(error.to_string())
    }
}

/// A connection opened by [`PgTarget::connect`]: diesel-async's connection
/// and the count of warnings its server sent.
pub struct Connection {
    conn: AsyncPgConnection,
    warnings: Arc<AtomicU64>,
    /// Closed (its sender dropped) when the connection's driver ends.
    ended: tokio::sync::watch::Receiver<()>,
    /// The session's `lock_timeout` in milliseconds, once this process set
    /// it ([`UNKNOWN_LOCK_TIMEOUT`] before): the idempotency claim's wait,
    /// set once per connection instead of in every transaction.
    lock_timeout_ms: AtomicU64,
}

/// [`Connection::lock_timeout_ms`] of a session whose `lock_timeout` this
/// process has not set.
const UNKNOWN_LOCK_TIMEOUT: u64 = u64::MAX;

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("warnings", &self.warnings.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A point in a connection's stream of warnings, from
/// [`Connection::warning_mark`].
#[derive(Debug, Clone, Copy)]
pub struct WarningMark(u64);

impl Connection {
    /// The session's `lock_timeout` as this process last set it.
    pub(crate) fn lock_timeout_ms(&self) -> Option<u64> {
        Some(self.lock_timeout_ms.load(Ordering::Relaxed)).filter(|ms| *ms != UNKNOWN_LOCK_TIMEOUT)
    }

    /// Remembers that the session's `lock_timeout` is now `ms`.
    pub(crate) fn note_lock_timeout_ms(&self, ms: u64) {
        self.lock_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// Where the connection's warnings stand now.
    pub fn warning_mark(&self) -> WarningMark {
        WarningMark(self.warnings.load(Ordering::Acquire))
    }

    /// Whether no warning arrived since `mark`. A commit that returned
    /// after a warning may not have reached the synchronous standby (the
    /// wait was cancelled, the transaction kept locally): it must not be
    /// answered as durable. A warning is counted before the answer of the
    /// statement it came with is handed over, since the server sends it first
    /// and the connection's messages are read in order.
    pub fn replicated_since(&self, mark: WarningMark) -> bool {
        self.warnings.load(Ordering::Acquire) == mark.0
    }

    /// Whether the connection has ended, or ends within `wait`.
    pub async fn ended_within(&self, wait: Duration) -> bool {
        let mut ended = self.ended.clone();
        matches!(tokio::time::timeout(wait, ended.changed()).await, Ok(Err(_)))
    }

    pub fn into_inner(self) -> AsyncPgConnection {
        self.conn
    }
}

impl std::ops::Deref for Connection {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

/// Reads the connection's messages until it closes (when its client is
/// dropped, or the server goes away), counting warnings; drops `ended` when
/// it stops.
async fn drive<S>(
    connection: tokio_postgres::Connection<tokio_postgres::Socket, S>,
    warnings: Arc<AtomicU64>,
    ended: tokio::sync::watch::Sender<()>,
) where
    S: tokio_postgres::tls::TlsStream + Unpin,
{
    let mut connection = connection;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notice(notice)) => {
                if matches!(notice.parsed_severity(), Some(Severity::Warning)) {
                    warnings.fetch_add(1, Ordering::AcqRel);
                    tracing::warn!(
                        code = notice.code().code(),
                        message = notice.message(),
                        detail = notice.detail(),
                        "PostgreSQL warning"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
                break;
            }
        }
    }
    drop(ended);
}

/// The one crypto provider of the process's TLS (reqwest and jsonwebtoken
/// use aws-lc-rs too); named explicitly so no process-wide default is needed.
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn load_roots(path: Option<&std::path::Path>) -> Result<RootCertStore, TargetError> {
    let mut roots = RootCertStore::empty();
    match path {
        Some(path) => {
            let error = |reason: String| TargetError::RootCert {
                path: path.to_owned(),
                reason,
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(error("holds no PEM certificate".into()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| error(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TargetError::Invalid(
                    "no sslrootcert given and no system root certificate found".into(),
                ));
            }
        }
    }
    Ok(roots)
}

fn percent_decode(value: &str) -> Result<String, TargetError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| TargetError::Invalid(format!("bad percent-encoding in {value:?}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| TargetError::Invalid(format!("{value:?} is not UTF-8")))
}

/// The rustls error behind a failed connection, if TLS is what failed.
fn rustls_error(error: &tokio_postgres::Error) -> Option<rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        source = current.source();
    }
    None
}

fn source_text(error: &tokio_postgres::Error) -> String {
    std::error::Error::source(error)
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// `prefer` and `require` without roots: encrypted, not authenticated (as
/// libpq). The handshake's signatures are still checked.
#[derive(Debug)]
struct NoVerification(rustls::crypto::WebPkiSupportedAlgorithms);

impl NoVerification {
    fn new() -> Self {
        Self(provider().signature_verification_algorithms)
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifying_modes_are_read_here_and_require_goes_to_the_wire() {
        let target = PgTarget::parse("postgres://u@db.example:5432/coffee?sslmode=verify-ca&sslrootcert=system")
            .or_else(|e| match e {
                // A machine without a system store still parses the URL.
                TargetError::Invalid(text) if text.contains("system root") => {
                    PgTarget::parse("postgres://u@db.example:5432/coffee?sslmode=require")
                }
                other => Err(other),
            })
            .expect("valid");
        assert_eq!(target.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn require_with_a_root_certificate_is_verify_ca_as_in_libpq() {
        let dir = std::env::temp_dir().join(format!("coffee-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.crt");
        let url = format!("postgres://u@h/db?sslmode=require&sslrootcert={}", missing.display());
        match PgTarget::parse(&url) {
            Err(TargetError::RootCert { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected the missing root file to be named, got {other:?}"),
        }
    }

    #[test]
    fn unknown_modes_and_allow_are_refused_with_their_name() {
        for (url, word) in [
            ("postgres://h/db?sslmode=sometimes", "sometimes"),
            ("postgres://h/db?sslmode=allow", "allow"),
        ] {
            match PgTarget::parse(url) {
                Err(TargetError::Invalid(text)) => assert!(text.contains(word), "{text}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn several_hosts_and_other_options_reach_tokio_postgres() {
        let target = PgTarget::parse(
            "postgres://u:p@h1:5432,h2:5433/coffee?target_session_attrs=read-write&sslmode=disable&application_name=x",
        )
        .expect("valid");
        assert_eq!(target.config.get_hosts().len(), 2);
        assert_eq!(
            target.config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(target.ssl_mode(), SslMode::Disable);
        assert_eq!(target.database(), Some("coffee"));
        assert_eq!(target.with_database("postgres").database(), Some("postgres"));
    }

    #[test]
    fn percent_encoded_paths_are_decoded() {
        assert_eq!(percent_decode("%2Fetc%2Fca%20x.pem").expect("valid"), "/etc/ca x.pem");
        assert!(percent_decode("%zz").is_err());
    }
}
