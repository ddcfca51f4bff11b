//! TLS for clients: the service towards an external broker (and its
//! webhooks, `system_client_config`), and
//! gateways (the simulator, tests) towards ours. rustls with the ring
//! provider, chosen explicitly (the process links more than one).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

fn certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: String| Error::Config(format!("{field}: {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A client configuration that trusts the CA in `ca` (PEM) and, for
/// mutual TLS, presents the chain `cert` with its `key` (PEM).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca", ca)? {
        roots
            .add(c)
            .map_err(|e| Error::Config(format!("ca: {}: {e}", ca.display())))?;
    }
    with_roots(roots, identity)
}

/// A client configuration that trusts the system's CA certificates (as
/// the platform keeps them), for servers with public certificates.
pub fn system_client_config() -> Result<Arc<rustls::ClientConfig>> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Error::Config(
            "no CA certificates on this system (name a CA file instead)".into(),
        ));
    }
    with_roots(roots, None)
}

fn with_roots(
    roots: rustls::RootCertStore,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certs("cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::Config(format!("key: {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Config(format!("cert and key: {e}")))?
        }
    };
    Ok(Arc::new(config))
}
