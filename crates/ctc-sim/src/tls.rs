//! TLS for simulated gateways (`wss://`): a certificate and key, self-signed at start or read
//! from PEM files, and the fingerprint a client pins to accept it.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ctc::CertificatePin;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A gateway's TLS identity. Cheap to clone: every gateway of a fleet started from one template
/// serves the same certificate, so one pin fits them all.
#[derive(Clone)]
pub struct SimTls {
    acceptor: TlsAcceptor,
    pin: CertificatePin,
}

impl SimTls {
    /// A new self-signed certificate (ECDSA P-256) for `localhost`, `127.0.0.1` and `::1`.
    pub fn localhost() -> io::Result<SimTls> {
        SimTls::self_signed(&[])
    }

    /// A new self-signed certificate for `localhost`, `127.0.0.1`, `::1` and `extra_names` (host
    /// names or IP addresses).
    pub fn self_signed(extra_names: &[String]) -> io::Result<SimTls> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        for name in extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let generated = rcgen::generate_simple_self_signed(names).map_err(invalid)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()));
        SimTls::new(vec![generated.cert.der().clone()], key)
    }

    /// A self-signed certificate that also names `bind` when it is a specific address (not
    /// loopback, which is always named, nor unspecified).
    pub fn self_signed_for(bind: IpAddr) -> io::Result<SimTls> {
        let extra: Vec<String> = (!bind.is_loopback() && !bind.is_unspecified())
            .then(|| bind.to_string())
            .into_iter()
            .collect();
        SimTls::self_signed(&extra)
    }

    /// The certificate chain (leaf first) and private key of PEM files.
    pub fn from_pem_files(certificate: &Path, key: &Path) -> io::Result<SimTls> {
        let pem_error = |path: &Path, error: rustls::pki_types::pem::Error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {error}", path.display()))
        };
        let chain = CertificateDer::pem_file_iter(certificate)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| pem_error(certificate, error))?;
        if chain.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no certificate", certificate.display()),
            ));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|error| pem_error(key, error))?;
        SimTls::new(chain, key_der)
    }

    /// A certificate chain (leaf first) and its private key.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> io::Result<SimTls> {
        let leaf = chain
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no certificate"))?;
        let pin = CertificatePin::of_certificate(leaf);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(invalid)?;
        Ok(SimTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            pin,
        })
    }

    /// The SHA-256 fingerprint of the leaf certificate: what a client pins.
    pub fn pin(&self) -> CertificatePin {
        self.pin
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTls").field("pin", &self.pin).finish_non_exhaustive()
    }
}

/// Two identities are the same when they serve the same certificate.
impl PartialEq for SimTls {
    fn eq(&self, other: &Self) -> bool {
        self.pin == other.pin
    }
}

fn invalid(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_pem_files_give_the_certificate_pin() {
        let generated = rcgen::generate_simple_self_signed(vec!["gateway.plant.example".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("ctc-sim-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, generated.cert.pem()).unwrap();
        std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
        let tls = SimTls::from_pem_files(&cert_path, &key_path).unwrap();
        assert_eq!(tls.pin(), CertificatePin::of_certificate(generated.cert.der()));

        let error = SimTls::from_pem_files(&key_path, &key_path).unwrap_err();
        assert!(error.to_string().contains("key.pem"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();

        let (one, two) = (SimTls::localhost().unwrap(), SimTls::localhost().unwrap());
        assert_ne!(one.pin(), two.pin());
        assert_eq!(one.clone(), one);
        assert!(format!("{one:?}").contains(&one.pin().to_string()));
    }
}
