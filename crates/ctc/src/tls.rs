//! `wss://` gateways: TLS through rustls (ring provider), verified against the platform's root
//! certificates, or against a [`CertificatePin`] for a gateway with a self-signed certificate.
//!
//! The platform's store (rustls-native-certs) rather than a built-in list (webpki-roots): a
//! gateway signed by a plant's own CA is trusted once that CA is installed on the server, as
//! for every other program there.
//!
//! A pin accepts exactly one certificate: the leaf whose DER hashes to it. Chain, expiry and host
//! name are then not checked (a self-signed certificate has no chain, and its names and dates
//! are whatever the vendor put there); the handshake signatures still are, so the peer must hold
//! the certificate's private key.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_tungstenite::Connector;
use tracing::{info, warn};

use crate::error::Error;

/// The SHA-256 fingerprint of a gateway's leaf certificate (DER), accepted in place of a
/// certificate chain that verifies.
///
/// Parsed from 64 hex digits, optionally colon-separated in pairs and optionally prefixed
/// `sha256:` (any case); shown as lowercase colon-separated pairs, as `openssl x509 -fingerprint
/// -sha256` prints them (but lowercase).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificatePin([u8; 32]);

impl CertificatePin {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        CertificatePin(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The pin of a certificate: the SHA-256 of its DER encoding.
    pub fn of_certificate(der: &[u8]) -> Self {
        CertificatePin(Sha256::digest(der).into())
    }
}

impl fmt::Display for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificatePin(sha256:{self})")
    }
}

/// Why a text is not a [`CertificatePin`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid certificate pin: {0}; expected the SHA-256 fingerprint as 64 hex digits, optionally in colon-separated pairs and prefixed sha256:")]
pub struct PinParseError(&'static str);

impl FromStr for CertificatePin {
    type Err = PinParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let digits = match text.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &text[7..],
            _ => text,
        };
        if !digits.chars().all(|c| c == ':' || c.is_ascii_hexdigit()) {
            return Err(PinParseError("not a hex digit"));
        }
        let pairs: Vec<&str> = if digits.contains(':') {
            let pairs: Vec<&str> = digits.split(':').collect();
            if pairs.iter().any(|pair| pair.len() != 2) {
                return Err(PinParseError("colons must separate pairs of hex digits"));
            }
            pairs
        } else {
            if digits.len() % 2 != 0 {
                return Err(PinParseError("an odd number of hex digits"));
            }
            (0..digits.len()).step_by(2).map(|at| &digits[at..at + 2]).collect()
        };
        if pairs.len() != 32 {
            return Err(PinParseError("not 32 bytes long"));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(pairs) {
            *byte = u8::from_str_radix(pair, 16).map_err(|_| PinParseError("not a hex digit"))?;
        }
        Ok(CertificatePin(bytes))
    }
}

/// The TLS connector for `url` (plain for `ws://`). A pin on a `ws://` URL is refused rather
/// than ignored: whoever set it expects the gateway to be authenticated.
pub(crate) async fn connector(url: &str, pin: Option<&CertificatePin>) -> Result<Connector, Error> {
    if !url.starts_with("wss://") {
        return match pin {
            None => Ok(Connector::Plain),
            Some(_) => Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "a certificate pin needs a wss:// URL".into(),
            }),
        };
    }
    Ok(Connector::Rustls(match pin {
        // Per connection: cheap, and no session cache shared with connections verified otherwise.
        Some(pin) => client_config(GatewayVerifier {
            pin: Some(*pin),
            webpki: None,
            provider: provider(),
        }),
        None => platform_config().await,
    }))
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn client_config(verifier: GatewayVerifier) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// The unpinned configuration, built once: loading the platform's certificates reads files, so
/// it runs on the blocking pool and is shared by every connection.
async fn platform_config() -> Arc<ClientConfig> {
    static CONFIG: OnceCell<Arc<ClientConfig>> = OnceCell::const_new();
    CONFIG
        .get_or_init(|| async {
            match tokio::task::spawn_blocking(build_platform_config).await {
                Ok(config) => config,
                Err(_) => build_platform_config(),
            }
        })
        .await
        .clone()
}

fn build_platform_config() -> Arc<ClientConfig> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        warn!(%error, "could not load some of the platform's root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    let provider = provider();
    let webpki = match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build() {
        Ok(verifier) => {
            info!(
                added,
                ignored, "loaded the platform's root certificates for wss:// gateways"
            );
            Some(verifier)
        }
        Err(error) => {
            warn!(%error, "no usable root certificates on this machine: wss:// gateways need a certificate pin");
            None
        }
    };
    client_config(GatewayVerifier {
        pin: None,
        webpki,
        provider,
    })
}

/// WebPKI verification (chain and host name), or the pin when there is one. Either way a
/// rejection names the fingerprint presented, so that an administrator can check and pin it.
#[derive(Debug)]
struct GatewayVerifier {
    pin: Option<CertificatePin>,
    /// `None` with a pin, or when the platform has no root certificates.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for GatewayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = CertificatePin::of_certificate(end_entity);
        let problem = match (&self.pin, &self.webpki) {
            (Some(pin), _) if *pin == presented => return Ok(ServerCertVerified::assertion()),
            (Some(pin), _) => Problem::PinMismatch(*pin),
            (None, Some(webpki)) => {
                match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                    Err(rustls::Error::InvalidCertificate(error)) => Problem::Untrusted(error),
                    other => return other,
                }
            }
            (None, None) => Problem::NoRoots,
        };
        let rejected = CertificateRejected { presented, problem };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
            Arc::new(rejected),
        ))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The gateway's certificate was refused; carried through rustls and tokio-tungstenite inside
/// their errors, and turned into the reason of an [`Error::Handshake`].
#[derive(Debug)]
struct CertificateRejected {
    presented: CertificatePin,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    PinMismatch(CertificatePin),
    Untrusted(CertificateError),
    NoRoots,
}

impl fmt::Display for CertificateRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let presented = self.presented;
        match &self.problem {
            Problem::PinMismatch(pin) => write!(
                f,
                "the gateway's certificate does not match the pin sha256:{pin}; it presented sha256:{presented}"
            ),
            Problem::Untrusted(error) => {
                let reason = match error {
                    CertificateError::UnknownIssuer => {
                        "unknown issuer: self-signed, or signed by a CA this machine does not trust".to_owned()
                    }
                    other => other.to_string(),
                };
                write!(
                    f,
                    "the gateway's certificate is not trusted ({reason}); it presented sha256:{presented}, \
                     which can be pinned to accept it once checked against the gateway"
                )
            }
            Problem::NoRoots => write!(
                f,
                "the gateway's certificate is not trusted (this machine has no root certificates); \
                 it presented sha256:{presented}, which can be pinned to accept it once checked against the gateway"
            ),
        }
    }
}

impl std::error::Error for CertificateRejected {}

/// The reason of a TLS failure inside an I/O error of the handshake, if it is one.
pub(crate) fn tls_failure(error: &std::io::Error) -> Option<String> {
    let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = tls {
        if let Some(rejected) = inner.downcast_ref::<CertificateRejected>() {
            return Some(format!("TLS: {rejected}"));
        }
    }
    Some(format!("TLS: {tls}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn expected() -> CertificatePin {
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = (index as u8 % 16) * 0x11;
        }
        CertificatePin::from_bytes(bytes)
    }

    #[test]
    fn parses_the_accepted_forms() {
        let colons = expected().to_string();
        assert_eq!(colons.len(), 95);
        assert!(colons.starts_with("00:11:22:") && colons.ends_with(":ee:ff"));
        for text in [
            HEX.to_owned(),
            HEX.to_uppercase(),
            colons.clone(),
            colons.to_uppercase(),
            format!("sha256:{HEX}"),
            format!("SHA256:{colons}"),
            format!("Sha256:{}", colons.to_uppercase()),
            format!("  sha256:{HEX}\n"),
        ] {
            assert_eq!(text.parse::<CertificatePin>(), Ok(expected()), "{text:?}");
        }
    }

    #[test]
    fn refuses_malformed_pins() {
        let colons = expected().to_string();
        for text in [
            "".to_owned(),
            "sha256:".to_owned(),
            HEX[..62].to_owned(),
            format!("{HEX}00"),
            format!("{}g", &HEX[..63]),
            format!("{HEX}0"),
            format!("{colons}:"),
            format!(":{colons}"),
            colons.replacen(':', "::", 1),
            colons.replacen(':', "", 1),
            format!("sha1:{HEX}"),
            format!("sha256:sha256:{HEX}"),
            format!("{} {}", &HEX[..32], &HEX[32..]),
            format!("+{}", &HEX[1..]),
            "é".repeat(32),
        ] {
            let error = text.parse::<CertificatePin>().unwrap_err();
            assert!(error.to_string().starts_with("invalid certificate pin"), "{text:?}");
        }
        let reason = |text: &str| text.parse::<CertificatePin>().unwrap_err().to_string();
        assert!(reason("zz").contains("not a hex digit"));
        assert!(reason(&HEX[..62]).contains("not 32 bytes long"));
        assert!(reason(&colons[..colons.len() - 1]).contains("colons must separate pairs"));
    }

    #[test]
    fn display_and_debug() {
        let pin = CertificatePin::of_certificate(b"not really a certificate");
        let shown = pin.to_string();
        assert_eq!(shown.parse::<CertificatePin>(), Ok(pin));
        assert!(shown
            .chars()
            .all(|c| c == ':' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(format!("{pin:?}"), format!("CertificatePin(sha256:{shown})"));
        // SHA-256 of the empty string.
        assert_eq!(
            CertificatePin::of_certificate(b"").to_string().replace(':', ""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
