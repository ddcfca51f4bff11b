//! Who may connect to the MQTT broker and what each may do: the one place
//! where the gateway registry becomes permissions.
//!
//! Principals:
//! - **the service**: its own client id, authenticated by a secret known
//!   only to the process (the embedded broker) or by its configured
//!   credential (an external broker); may subscribe to everything and
//!   publish gateway commands (Sparkplug `NCMD`).
//! - **a gateway**: client id and user name equal to its registry id,
//!   proved by its password (argon2id) or by the common name of a client
//!   certificate the broker's TLS layer verified; may publish only under
//!   its own topics and subscribe only to commands addressed to it.
//! - **anyone else**: refused once a gateway is registered. With an empty
//!   registry (open mode, loopback only) an anonymous client may publish
//!   telemetry and status, but may still not subscribe to telemetry or take
//!   the service's client id.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hazardwatch_proto::{GatewayIdx, Registry};

use crate::sparkplug;

/// Makes the argon2id PHC string of `password` for a gateway's
/// `password_hash` (argon2's defaults: 19 MiB, two passes, one lane, as
/// OWASP recommends; a fresh random salt each time).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches the PHC string `hash`. A malformed hash
/// matches nothing (the site model's checks refuse one at load).
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// What a connection proved at CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// The service's own client.
    Service,
    /// A registered gateway.
    Gateway(GatewayIdx),
    /// A client of the open mode (no registry): anonymous.
    Anonymous,
}

/// Why a CONNECT was refused (a metric label and a log field; never the
/// password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No user name and no certificate, with gateways registered.
    Anonymous,
    /// The user name (or certificate) names no registered gateway.
    UnknownGateway,
    /// The password does not match, or the gateway has no password and no
    /// certificate was presented.
    BadCredential,
    /// The client id is not the gateway's id (or is the service's).
    WrongClientId,
    /// A certificate that names a different gateway than the user name.
    CertificateMismatch,
    /// A last will on a topic the client may not publish to (a forged
    /// `offline` for another gateway).
    ForeignLastWill,
}

impl Refusal {
    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Anonymous => "anonymous",
            Refusal::UnknownGateway => "unknown_gateway",
            Refusal::BadCredential => "bad_credential",
            Refusal::WrongClientId => "wrong_client_id",
            Refusal::CertificateMismatch => "certificate_mismatch",
            Refusal::ForeignLastWill => "foreign_last_will",
        }
    }
}

/// What a CONNECT carries that authentication looks at.
#[derive(Debug, Clone, Copy)]
pub struct Connect<'a> {
    /// The MQTT client id.
    pub client_id: &'a str,
    /// The user name, if any.
    pub username: Option<&'a str>,
    /// The password, if any.
    pub password: Option<&'a [u8]>,
    /// The common name of a client certificate the TLS layer verified.
    pub cert_cn: Option<&'a str>,
}

/// The service's identity on the broker.
#[derive(Clone)]
pub struct ServiceIdentity {
    /// Its client id (`[mqtt] client_id`).
    pub client_id: String,
    /// Its user name.
    pub username: String,
    /// Its secret (compared in constant time).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIdentity")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ServiceIdentity {
    /// An identity for `client_id` (also its user name) with a fresh random
    /// secret: the embedded broker's, known only to this process.
    pub fn generate(client_id: &str) -> ServiceIdentity {
        use argon2::password_hash::rand_core::RngCore;
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        ServiceIdentity {
            client_id: client_id.to_owned(),
            username: client_id.to_owned(),
            secret: secret
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decides who a CONNECT is (see the module docs).
pub fn authenticate(
    registry: &Registry,
    service: &ServiceIdentity,
    c: &Connect<'_>,
) -> Result<Principal, Refusal> {
    if c.username == Some(service.username.as_str()) && c.cert_cn.is_none() {
        let ok = c
            .password
            .is_some_and(|p| constant_time_eq(p, &service.secret));
        if !ok {
            return Err(Refusal::BadCredential);
        }
        return if c.client_id == service.client_id {
            Ok(Principal::Service)
        } else {
            Err(Refusal::WrongClientId)
        };
    }
    if c.client_id == service.client_id {
        return Err(Refusal::WrongClientId);
    }
    if registry.is_open() {
        // Open mode: loopback only (checked at start); nobody needs a name.
        return Ok(Principal::Anonymous);
    }
    let by_cert = match c.cert_cn {
        Some(cn) => Some(registry.by_cert_cn(cn).ok_or(Refusal::UnknownGateway)?),
        None => None,
    };
    let by_name = match c.username {
        Some(u) => Some(registry.lookup(u).ok_or(Refusal::UnknownGateway)?),
        None => None,
    };
    let idx = match (by_cert, by_name) {
        (None, None) => return Err(Refusal::Anonymous),
        (Some(a), Some(b)) if a != b => return Err(Refusal::CertificateMismatch),
        (Some(a), _) | (None, Some(a)) => a,
    };
    let gateway = registry.gateway(idx);
    if c.client_id != gateway.id {
        return Err(Refusal::WrongClientId);
    }
    let credential = &gateway.credential;
    // A certificate is enough when the gateway is registered with it; a
    // registered password must also be given (two factors when both).
    if credential.cert_cn.is_some() && by_cert.is_none() {
        return Err(Refusal::BadCredential);
    }
    if let Some(hash) = &credential.password_hash {
        let given = c.password.unwrap_or_default();
        if !verify_password(hash, given) {
            return Err(Refusal::BadCredential);
        }
    }
    Ok(Principal::Gateway(idx))
}

/// Whether `principal` may publish to `topic` (`prefix`: the telemetry
/// topic prefix).
pub fn may_publish(registry: &Registry, prefix: &str, principal: Principal, topic: &str) -> bool {
    match principal {
        Principal::Service => true,
        Principal::Anonymous => {
            crate::topic::parse(prefix, topic).is_some()
                || crate::topic::parse_status(prefix, topic).is_some()
                || sparkplug::parse_topic(topic).is_some_and(|t| !is_command(t.kind))
        }
        Principal::Gateway(g) => {
            let gateway = registry.gateway(g);
            let own =
                |enterprise: &str, id: &str| enterprise == gateway.enterprise && id == gateway.id;
            if let Some(t) = crate::topic::parse(prefix, topic) {
                return own(t.enterprise, t.gateway);
            }
            if let Some((enterprise, id)) = crate::topic::parse_status(prefix, topic) {
                return own(enterprise, id);
            }
            if let Some(t) = sparkplug::parse_topic(topic) {
                return !is_command(t.kind) && own(t.group, t.node);
            }
            false
        }
    }
}

/// Sparkplug commands: the service's (or a host's) to send, never a
/// gateway's.
fn is_command(kind: sparkplug::Kind) -> bool {
    matches!(kind, sparkplug::Kind::NCmd | sparkplug::Kind::DCmd)
}

/// Whether `principal` may subscribe to `filter`: the service to anything;
/// a gateway only to filters that match nothing but its own command
/// topics (`{prefix}/{enterprise}/{id}/cmd/...`); the open mode's
/// anonymous clients to nothing.
pub fn may_subscribe(
    registry: &Registry,
    prefix: &str,
    principal: Principal,
    filter: &str,
) -> bool {
    match principal {
        Principal::Service => true,
        Principal::Anonymous => false,
        Principal::Gateway(g) => {
            let gateway = registry.gateway(g);
            let own = format!("{prefix}/{}/{}/cmd", gateway.enterprise, gateway.id);
            let sp = sparkplug::NAMESPACE;
            let ncmd = format!("{sp}/{}/NCMD/{}", gateway.enterprise, gateway.id);
            let dcmd = format!("{sp}/{}/DCMD/{}", gateway.enterprise, gateway.id);
            // No wildcard above the gateway's own command level.
            let under = |base: &str| {
                filter == base
                    || filter
                        .strip_prefix(base)
                        .is_some_and(|rest| rest.starts_with('/'))
            };
            under(&own) || filter == ncmd || under(&dcmd)
        }
    }
}

/// The same policy as a mosquitto ACL file (`acl_file`), for a park that
/// runs Debian's mosquitto (or another broker that reads its format) as
/// its production broker: `service_user` reads everything under the
/// prefix; each gateway writes only its own telemetry and status topics
/// and reads only its own command topics. Run mosquitto with
/// `allow_anonymous false`, a `password_file`, and `use_username_as_clientid
/// true` (so a client id cannot be borrowed, the service's included).
/// Passwords are the broker's own (`mosquitto_passwd`): it cannot read the
/// registry's argon2id hashes.
pub fn mosquitto_acl(registry: &Registry, prefix: &str, service_user: &str) -> String {
    let mut out = String::from(
        "# Generated by `hazardwatch gateway mosquitto-acl` from the gateway registry.\n\
         # Regenerate it whenever gateways change; anything not granted is denied.\n\n",
    );
    let sp = sparkplug::NAMESPACE;
    out.push_str(&format!(
        "# The hazardwatch service: reads all telemetry and status, commands gateways.\n\
         user {service_user}\ntopic read {prefix}/#\ntopic write {prefix}/+/+/cmd/#\n\
         topic read {sp}/#\ntopic write {sp}/+/NCMD/#\ntopic write {sp}/+/DCMD/#\n\n"
    ));
    for g in registry.gateways() {
        let own = format!("{prefix}/{}/{}", g.enterprise, g.id);
        out.push_str(&format!(
            "# {} ({}), enterprise {}\nuser {}\n\
             topic write {own}/telemetry\ntopic write {own}/telemetry/pb\ntopic write {own}/status\n\
             topic read {own}/cmd/#\n",
            g.id,
            if g.name.is_empty() { "gateway" } else { &g.name },
            g.enterprise,
            g.id,
        ));
        let (e, id) = (&g.enterprise, &g.id);
        for kind in ["NBIRTH", "NDATA", "NDEATH"] {
            out.push_str(&format!("topic write {sp}/{e}/{kind}/{id}\n"));
        }
        for kind in ["DBIRTH", "DDATA", "DDEATH"] {
            out.push_str(&format!("topic write {sp}/{e}/{kind}/{id}/+\n"));
        }
        out.push_str(&format!(
            "topic read {sp}/{e}/NCMD/{id}\ntopic read {sp}/{e}/DCMD/{id}/#\n\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hazardwatch_proto::{Credential, GatewayInfo};

    fn registry(hash: &str) -> Registry {
        let gw = |id: &str, enterprise: &str, hash: Option<&str>, cn: Option<&str>| GatewayInfo {
            id: id.into(),
            name: String::new(),
            enterprise: enterprise.into(),
            points: vec![],
            interval_ms: 1000,
            offline_after_ms: 10_000,
            credential: Credential {
                password_hash: hash.map(Into::into),
                cert_cn: cn.map(Into::into),
            },
        };
        Registry::new(
            vec![
                gw("GW1", "E01", Some(hash), None),
                gw("GW2", "E02", None, Some("gw2.example")),
                gw("GW3", "E02", Some(hash), Some("gw3.example")),
            ],
            0,
        )
    }

    fn service() -> ServiceIdentity {
        ServiceIdentity {
            client_id: "hazardwatch".into(),
            username: "hazardwatch".into(),
            secret: b"s3cret".to_vec(),
        }
    }

    fn connect<'a>(
        client_id: &'a str,
        username: Option<&'a str>,
        password: Option<&'a [u8]>,
        cert_cn: Option<&'a str>,
    ) -> Connect<'a> {
        Connect {
            client_id,
            username,
            password,
            cert_cn,
        }
    }

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password(&a, b"pw"));
        assert!(!verify_password(&a, b"pW"));
        assert!(!verify_password("not a hash", b"pw"));
    }

    #[test]
    fn who_may_connect() {
        let r = registry(&hash_password("right").unwrap());
        let s = service();
        let auth = |c| authenticate(&r, &s, &c);
        assert_eq!(
            auth(connect("GW1", Some("GW1"), Some(b"right"), None)),
            Ok(Principal::Gateway(0))
        );
        assert_eq!(
            auth(connect("GW1", Some("GW1"), Some(b"wrong"), None)),
            Err(Refusal::BadCredential)
        );
        assert_eq!(
            auth(connect("GW1", Some("GW1"), None, None)),
            Err(Refusal::BadCredential)
        );
        assert_eq!(
            auth(connect("GWx", Some("GW1"), Some(b"right"), None)),
            Err(Refusal::WrongClientId)
        );
        assert_eq!(
            auth(connect("GW9", Some("GW9"), Some(b"right"), None)),
            Err(Refusal::UnknownGateway)
        );
        assert_eq!(
            auth(connect("x", None, None, None)),
            Err(Refusal::Anonymous)
        );
        // Certificates: enough alone when registered alone; with a password
        // registered too, both are needed; a certificate alone is not a
        // password.
        assert_eq!(
            auth(connect("GW2", None, None, Some("gw2.example"))),
            Ok(Principal::Gateway(1))
        );
        assert_eq!(
            auth(connect("GW2", Some("GW2"), None, None)),
            Err(Refusal::BadCredential)
        );
        assert_eq!(
            auth(connect("GW3", None, None, Some("gw3.example"))),
            Err(Refusal::BadCredential)
        );
        assert_eq!(
            auth(connect(
                "GW3",
                Some("GW3"),
                Some(b"right"),
                Some("gw3.example")
            )),
            Ok(Principal::Gateway(2))
        );
        assert_eq!(
            auth(connect(
                "GW3",
                Some("GW3"),
                Some(b"right"),
                Some("gw2.example")
            )),
            Err(Refusal::CertificateMismatch)
        );
        assert_eq!(
            auth(connect("GW2", None, None, Some("other.example"))),
            Err(Refusal::UnknownGateway)
        );
        // The service's client id and user name are the service's alone.
        assert_eq!(
            auth(connect(
                "hazardwatch",
                Some("hazardwatch"),
                Some(b"s3cret"),
                None
            )),
            Ok(Principal::Service)
        );
        assert_eq!(
            auth(connect(
                "hazardwatch",
                Some("hazardwatch"),
                Some(b"guess"),
                None
            )),
            Err(Refusal::BadCredential)
        );
        assert_eq!(
            auth(connect("hazardwatch", Some("GW1"), Some(b"right"), None)),
            Err(Refusal::WrongClientId)
        );
        assert_eq!(
            auth(connect("other", Some("hazardwatch"), Some(b"s3cret"), None)),
            Err(Refusal::WrongClientId)
        );
        // Open mode: anonymous, but still not as the service.
        let open = Registry::default();
        assert_eq!(
            authenticate(&open, &s, &connect("x", None, None, None)),
            Ok(Principal::Anonymous)
        );
        assert_eq!(
            authenticate(&open, &s, &connect("hazardwatch", None, None, None)),
            Err(Refusal::WrongClientId)
        );
    }

    #[test]
    fn who_may_publish_and_subscribe() {
        let r = registry(&hash_password("x").unwrap());
        let p = "hw/v1";
        let gw1 = Principal::Gateway(0);
        assert!(may_publish(&r, p, gw1, "hw/v1/E01/GW1/telemetry"));
        assert!(may_publish(&r, p, gw1, "hw/v1/E01/GW1/telemetry/pb"));
        assert!(may_publish(&r, p, gw1, "hw/v1/E01/GW1/status"));
        assert!(
            !may_publish(&r, p, gw1, "hw/v1/E01/GW2/telemetry"),
            "another gateway"
        );
        assert!(
            !may_publish(&r, p, gw1, "hw/v1/E02/GW1/telemetry"),
            "another enterprise"
        );
        assert!(!may_publish(&r, p, gw1, "hw/v1/E01/GW1/other"));
        assert!(!may_publish(&r, p, gw1, "elsewhere"));
        assert!(may_publish(
            &r,
            p,
            Principal::Anonymous,
            "hw/v1/E01/GW9/telemetry"
        ));
        assert!(!may_publish(&r, p, Principal::Anonymous, "elsewhere"));
        assert!(may_subscribe(&r, p, gw1, "hw/v1/E01/GW1/cmd"));
        assert!(may_subscribe(&r, p, gw1, "hw/v1/E01/GW1/cmd/#"));
        for f in [
            "#",
            "hw/v1/#",
            "hw/v1/E01/+/cmd",
            "hw/v1/E01/GW1/#",
            "hw/v1/E01/GW1/cmdx",
            "hw/v1/E01/GW2/cmd",
        ] {
            assert!(!may_subscribe(&r, p, gw1, f), "{f}");
        }
        assert!(!may_subscribe(
            &r,
            p,
            Principal::Anonymous,
            "hw/v1/+/+/telemetry"
        ));
        assert!(may_subscribe(&r, p, Principal::Service, "#"));
        // Sparkplug B: its own node's and devices' messages; its own commands.
        for t in [
            "spBv1.0/E01/NBIRTH/GW1",
            "spBv1.0/E01/NDATA/GW1",
            "spBv1.0/E01/NDEATH/GW1",
            "spBv1.0/E01/DDATA/GW1/pump",
        ] {
            assert!(may_publish(&r, p, gw1, t), "{t}");
        }
        for t in [
            "spBv1.0/E01/NDATA/GW2",
            "spBv1.0/E02/NDATA/GW1",
            "spBv1.0/E01/NCMD/GW1",
            "spBv1.0/E01/NCMD/GW2",
        ] {
            assert!(!may_publish(&r, p, gw1, t), "{t}");
        }
        assert!(may_subscribe(&r, p, gw1, "spBv1.0/E01/NCMD/GW1"));
        assert!(may_subscribe(&r, p, gw1, "spBv1.0/E01/DCMD/GW1/#"));
        for f in [
            "spBv1.0/#",
            "spBv1.0/E01/NCMD/+",
            "spBv1.0/E01/NDATA/GW1",
            "spBv1.0/E01/NCMD/GW1/#",
        ] {
            assert!(!may_subscribe(&r, p, gw1, f), "{f}");
        }
        assert!(may_publish(
            &r,
            p,
            Principal::Service,
            "spBv1.0/E01/NCMD/GW1"
        ));
    }
}
