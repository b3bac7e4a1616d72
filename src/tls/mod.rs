//! rustls, and nothing else: turns `config::tls::TlsSettings` into a `ServerConfig` (the
//! certificate chain and key read from PEM files with `rustls-pki-types`, the client-certificate
//! verifier, the cipher suites, the lowest version, ALPN), and renders a peer certificate as
//! PEM for the environ. Sockets, handshakes and HTTP belong to `server`; when the files are
//! read (startup, and each new process a SIGHUP starts) belongs to `lifecycle`. The ring
//! provider is used: it builds with a C compiler alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::tls::{ClientAuth, TlsSettings, TlsVersion};

/// Why TLS cannot be set up; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("Cannot read {what} {path}: {err}")]
    Read {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("Invalid PEM in {what} {path}: {err}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        err: String,
    },
    #[error("No certificate in {what} {path}")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("No private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in keyfile {0}")]
    NoKey(PathBuf),
    #[error("The private key in keyfile {key} does not match the certificate in certfile {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("Cannot use the key in keyfile {key} with the certificate in certfile {cert}: {err}")]
    BadKey {
        key: PathBuf,
        cert: PathBuf,
        err: rustls::Error,
    },
    #[error("Cannot use the CA certificates in ca_certs {path}: {err}")]
    BadCa { path: PathBuf, err: String },
    #[error("Cannot set up TLS: {0}")]
    Setup(String),
}

/// Builds the server's TLS configuration, reading every file it names.
pub fn load(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(list) = &settings.ciphers {
        let all = std::mem::take(&mut provider.cipher_suites);
        provider.cipher_suites = list
            .0
            .iter()
            .filter_map(|id| all.iter().find(|s| u16::from(s.suite()) == *id).copied())
            .collect();
    }
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|err| {
            TlsError::Setup(format!(
                "no cipher suite left for the TLS versions allowed ({err})"
            ))
        })?;
    let builder = match (settings.client_auth, &settings.ca_certs) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("ca_certs", path)? {
                roots.add(cert).map_err(|err| TlsError::BadCa {
                    path: path.clone(),
                    err: err.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|err| TlsError::BadCa {
                path: path.clone(),
                err: err.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = certificates("certfile", &settings.certfile)?;
    let key = private_key(&settings.keyfile)?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    key: settings.keyfile.clone(),
                    cert: settings.certfile.clone(),
                }
            }
            err => TlsError::BadKey {
                key: settings.keyfile.clone(),
                cert: settings.certfile.clone(),
                err,
            },
        })?;
    config.alpn_protocols = settings.alpn.iter().map(|p| p.alpn().to_vec()).collect();
    // A `--ciphers` list is an order of preference, as OpenSSL servers apply it.
    config.ignore_client_order = settings.ciphers.is_some();
    Ok(Arc::new(config))
}

fn read_error(what: &'static str, path: &Path, err: rustls::pki_types::pem::Error) -> TlsError {
    match err {
        rustls::pki_types::pem::Error::Io(err) => TlsError::Read {
            what,
            path: path.to_path_buf(),
            err,
        },
        err => TlsError::Pem {
            what,
            path: path.to_path_buf(),
            err: err.to_string(),
        },
    }
}

/// Every certificate in a PEM file, in order; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| read_error(what, path, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| read_error(what, path, err))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file, whatever its encoding.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(path.to_path_buf()),
        err => read_error("keyfile", path, err),
    })
}

/// A DER certificate as PEM, the form nginx (`$ssl_client_escaped_cert`, unescaped) and
/// Apache (`SSL_CLIENT_CERT`) hand to applications.
pub fn pem(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            b64.push(match i <= chunk.len() {
                true => ALPHABET[(n >> (18 - 6 * i) & 63) as usize],
                false => b'=',
            });
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_through_the_pki_types_decoder() {
        for len in [0usize, 1, 2, 3, 4, 5, 100, 301] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let text = pem(&der);
            if len == 0 {
                continue;
            }
            let back = CertificateDer::from_pem_slice(text.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), der.as_slice(), "len {len}");
        }
    }

    #[test]
    fn every_mapped_cipher_is_a_ring_suite() {
        let ids: Vec<u16> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        let all = crate::config::tls::parse_ciphers("ALL").unwrap();
        for id in all.0 {
            assert!(ids.contains(&id), "{id:#x}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let settings = TlsSettings {
            certfile: "/nonexistent/cert.pem".into(),
            keyfile: "/nonexistent/key.pem".into(),
            ca_certs: None,
            client_auth: ClientAuth::None,
            ciphers: None,
            min_version: TlsVersion::V1_2,
            alpn: vec![],
        };
        let err = load(&settings).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
