//! The hub's certificate authority.
//!
//! Made once (`mcp-hub ca init`, or at first start) with rcgen, key written 0600 with create-new, and
//! only ever loaded afterwards: regenerating it would silently break every devbox that trusts it.
//! SECURITY: the CA is name-constrained to the hub's own hosts (the MCP gateway's and, when configured,
//! the agent gateway's), so even a stolen CA key cannot be used to impersonate any other site to a
//! devbox that trusts it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TlsError;
use crate::state::fsutil;

/// A loaded CA able to issue the gateway's leaf certificate.
pub struct Ca {
    /// PEM of the CA certificate (what devboxes trust).
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    permitted: Vec<GeneralSubtree>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// `ca.pem` in `dir`.
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

fn host_path(dir: &Path) -> PathBuf {
    dir.join("ca.host")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn cert_err(e: rcgen::Error) -> TlsError {
    TlsError::Cert(e.to_string())
}

fn subtree(host: &str) -> GeneralSubtree {
    match host.parse::<IpAddr>() {
        Ok(ip) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
            ip,
            if ip.is_ipv4() { 32 } else { 128 },
        )),
        Err(_) => GeneralSubtree::DnsName(host.to_string()),
    }
}

fn subtree_label(s: &GeneralSubtree) -> String {
    match s {
        GeneralSubtree::DnsName(n) => n.clone(),
        GeneralSubtree::IpAddress(CidrSubnet::V4(a, _)) => IpAddr::from(*a).to_string(),
        GeneralSubtree::IpAddress(CidrSubnet::V6(a, _)) => IpAddr::from(*a).to_string(),
        other => format!("{other:?}"),
    }
}

/// Create the CA in `dir` for `hosts` unless one exists. Returns whether it was created.
///
/// # Errors
/// Key generation or file errors. An existing CA is never touched.
pub fn init(dir: &Path, hosts: &[&str]) -> Result<bool, TlsError> {
    let host = hosts.first().copied().unwrap_or("localhost");
    let cert = cert_path(dir);
    let key = key_path(dir);
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    fsutil::ensure_dir(dir, 0o755).map_err(io_err(dir))?;
    let kp = KeyPair::generate().map_err(cert_err)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("mcp-hub CA for {host}"));
    dn.push(DnType::OrganizationName, "mcp-hub");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: hosts.iter().map(|h| subtree(h)).collect(),
        excluded_subtrees: vec![],
    });
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
    let c = p.self_signed(&kp).map_err(cert_err)?;
    // SECURITY: the key is created 0600 and never overwritten (create_new).
    fsutil::create_new(&key, kp.serialize_pem().as_bytes(), 0o600).map_err(io_err(&key))?;
    fsutil::create_new(&cert, c.pem().as_bytes(), 0o644).map_err(io_err(&cert))?;
    let hp = host_path(dir);
    let lines: String = hosts.iter().map(|h| format!("{h}\n")).collect();
    fsutil::write_atomic(&hp, lines.as_bytes(), 0o644).map_err(io_err(&hp))?;
    Ok(true)
}

/// Load the CA from `dir` (never regenerates it).
///
/// # Errors
/// Missing or unparsable files.
pub fn load(dir: &Path) -> Result<Ca, TlsError> {
    let cert = cert_path(dir);
    let key = key_path(dir);
    if !cert.exists() || !key.exists() {
        return Err(TlsError::NoCa(dir.display().to_string()));
    }
    let cert_pem = std::fs::read_to_string(&cert).map_err(io_err(&cert))?;
    let key_pem = std::fs::read_to_string(&key).map_err(io_err(&key))?;
    let kp = KeyPair::from_pem(&key_pem).map_err(cert_err)?;
    // The hosts the CA was constrained to at creation, one per line (rcgen cannot read constraints back
    // from a cert).
    let permitted = std::fs::read_to_string(host_path(dir))
        .map(|h| {
            h.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(subtree)
                .collect()
        })
        .unwrap_or_default();
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, kp).map_err(cert_err)?;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| TlsError::Cert(format!("{}: {e}", cert.display())))?;
    Ok(Ca {
        cert_pem,
        cert_der: der,
        issuer,
        permitted,
    })
}

impl Ca {
    /// Fail early if the CA's name constraints do not cover every one of `hosts`.
    ///
    /// # Errors
    /// `WrongHost` naming the first host not covered and what the CA permits.
    pub fn check_hosts(&self, dir: &Path, hosts: &[&str]) -> Result<(), TlsError> {
        for host in hosts {
            if !self.permitted.is_empty() && !self.permitted.contains(&subtree(host)) {
                return Err(TlsError::WrongHost {
                    dir: dir.display().to_string(),
                    constrained: self.permitted.iter().map(subtree_label).collect(),
                    host: host.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Issue a leaf certificate and key naming every one of `hosts`.
    ///
    /// # Errors
    /// Certificate generation errors.
    pub fn issue_leaf(
        &self,
        hosts: &[&str],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let kp = KeyPair::generate().map_err(cert_err)?;
        let mut p = CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .map_err(cert_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(397);
        let leaf = p.signed_by(&kp, &self.issuer).map_err(cert_err)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
        Ok((vec![leaf.der().clone(), self.cert_der.clone()], key))
    }

    /// A rustls server config for the hub's hosts, offering h2 and HTTP/1.1 via ALPN.
    ///
    /// # Errors
    /// Leaf issuance or rustls errors.
    pub fn server_config(&self, hosts: &[&str]) -> Result<Arc<ServerConfig>, TlsError> {
        let (chain, key) = self.issue_leaf(hosts)?;
        let mut cfg =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_create_once_and_load_checks_host() {
        let d = tempfile::tempdir().unwrap();
        assert!(init(d.path(), &["mcp.hub.internal", "agents.hub.internal"]).unwrap());
        let pem1 = std::fs::read(cert_path(d.path())).unwrap();
        assert!(!init(d.path(), &["mcp.hub.internal"]).unwrap());
        assert_eq!(
            std::fs::read(cert_path(d.path())).unwrap(),
            pem1,
            "CA must never be regenerated"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = load(d.path()).unwrap();
        ca.check_hosts(d.path(), &["mcp.hub.internal", "agents.hub.internal"])
            .unwrap();
        let e = ca
            .check_hosts(d.path(), &["mcp.hub.internal", "other.example"])
            .unwrap_err();
        assert!(e.to_string().contains("other.example"), "{e}");
        ca.server_config(&["mcp.hub.internal", "agents.hub.internal"])
            .unwrap();
    }

    #[test]
    fn ip_hosts_work() {
        let d = tempfile::tempdir().unwrap();
        init(d.path(), &["127.0.0.1"]).unwrap();
        let ca = load(d.path()).unwrap();
        ca.check_hosts(d.path(), &["127.0.0.1"]).unwrap();
        ca.server_config(&["127.0.0.1"]).unwrap();
    }
}
