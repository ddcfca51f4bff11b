//! Who may call the gRPC service, and what they see: bearer tokens from the
//! configuration, each with a role and a scope.
//!
//! ```toml
//! [[access.token]]
//! name = "E01 control room"        # recorded with its actions, named in logs
//! token = "a long random secret"   # sent as `authorization: Bearer ...`
//! role = "operator"                # viewer | operator | admin
//! level = "enterprise"             # enterprise | park | county | city | province
//! enterprises = ["E01"]            # its scope; ["*"]: the whole park
//! ```
//!
//! - A *viewer* reads (Subscribe, ListActive, History); an *operator* also
//!   acts on alarms (acknowledge, shelve, reset, ...); an *admin* also
//!   changes the site (unit states).
//! - Every call and every streamed event is filtered by the token's
//!   enterprises: an alarm outside them does not exist for it (an action on
//!   one is `NOT_FOUND`, naming one in a filter `PERMISSION_DENIED`).
//! - `level` places the holder on the escalation chain (a county
//!   regulator's token has `level = "county"` and the county's
//!   enterprises).
//!
//! With no tokens configured the service is open (everyone is an admin of
//! the whole park), which is accepted only when gRPC listens on loopback.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};

/// What a token may do, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads alarms.
    Viewer,
    /// Also acts on alarms.
    Operator,
    /// Also changes the site (unit states).
    Admin,
}

/// A place on the escalation chain, from the plant up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The enterprise's duty officer.
    Enterprise,
    /// The park's administration.
    Park,
    /// County regulator.
    County,
    /// City regulator.
    City,
    /// Province regulator.
    Province,
}

/// One `[[access.token]]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who holds it (a control room, a regulator's office).
    pub name: String,
    /// The secret, at least 16 characters.
    pub token: String,
    /// What it may do.
    pub role: Role,
    /// Where its holder sits on the escalation chain.
    #[serde(default = "enterprise_level")]
    pub level: Level,
    /// Enterprise ids it sees; `["*"]` for the whole park.
    pub enterprises: Vec<String>,
    /// On a regional instance, the park ids it sees (default `["*"]`: every
    /// one); a park instance takes only `["*"]`.
    #[serde(default = "every_park")]
    pub parks: Vec<String>,
}

fn every_park() -> Vec<String> {
    vec!["*".into()]
}

impl Role {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl Level {
    /// Its name in the configuration (and [`crate::table::ESCALATION_LEVELS`]).
    pub fn as_str(self) -> &'static str {
        crate::table::ESCALATION_LEVELS[self as usize]
    }
}

fn enterprise_level() -> Level {
    Level::Enterprise
}

/// `[access]` settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// The tokens; none: open service (loopback only).
    #[serde(default)]
    pub token: Vec<TokenSpec>,
    /// A file of more `[[token]]` entries, kept apart from the rest of the
    /// configuration (a Kubernetes Secret, a file only the service reads);
    /// relative to the configuration file. The configuration loader reads
    /// it into `token`.
    #[serde(default)]
    pub tokens_file: Option<std::path::PathBuf>,
}

/// A tokens file (`[access] tokens_file`) as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Its `[[token]]` entries.
    #[serde(default)]
    pub token: Vec<TokenSpec>,
}

/// The enterprises (or, on a regional instance, the parks) a caller may
/// see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// All of them.
    #[default]
    All,
    /// These.
    Only(Arc<BTreeSet<String>>),
}

impl Scope {
    /// True when the caller may see the alarms of this enterprise (or
    /// park).
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(id),
        }
    }

    /// The scope `listed` gives (`["*"]`: all), each id checked against
    /// `known`; `what` names them in errors, `field` is the setting.
    fn of(listed: &[String], known: &BTreeSet<String>, what: &str, field: String) -> Result<Scope> {
        if listed == ["*"] {
            return Ok(Scope::All);
        }
        if listed.is_empty() {
            return Err(Error::config(
                field,
                format!("list the {what}s it sees, or [\"*\"] for all"),
            ));
        }
        if let Some(unknown) = listed.iter().find(|id| !known.contains(*id)) {
            return Err(Error::config(field, format!("no {what} `{unknown}` here")));
        }
        Ok(Scope::Only(Arc::new(listed.iter().cloned().collect())))
    }
}

/// An authenticated caller, as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; empty on an open service.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Its place on the escalation chain.
    pub level: Level,
    /// The enterprises it sees.
    pub scope: Scope,
    /// The parks it sees (on a regional instance).
    pub parks: Scope,
}

impl Caller {
    /// The caller of an open service: everything, as admin.
    pub fn open() -> Caller {
        Caller {
            name: String::new(),
            role: Role::Admin,
            level: Level::Province,
            scope: Scope::All,
            parks: Scope::All,
        }
    }

    /// Refuses a caller whose role is below `needed`.
    pub fn require(&self, needed: Role) -> Result<()> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "token `{}` is a {:?}; this needs {:?}",
                self.name, self.role, needed
            )))
        }
    }

    /// The name recorded as an action's actor: the person, and the token
    /// they acted through.
    pub fn actor(&self, operator: &str) -> String {
        if self.name.is_empty() {
            operator.to_owned()
        } else {
            format!("{operator} via {}", self.name)
        }
    }
}

/// The validated tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    grants: Vec<(Vec<u8>, Caller)>,
}

impl Access {
    /// Validates `[access]` against the site's enterprises. (Whether an
    /// open service may listen where it does is the service
    /// configuration's check.)
    pub fn new(config: &AccessConfig, enterprises: &BTreeSet<String>) -> Result<Access> {
        Self::build(config, enterprises, &BTreeSet::new())
    }

    /// Validates a regional instance's `[access]`: tokens are scoped by
    /// `parks` (its upstream parks); enterprise ids are the parks' own, so
    /// there `enterprises` is `["*"]`.
    pub fn regional(config: &AccessConfig, parks: &BTreeSet<String>) -> Result<Access> {
        Self::build(config, &BTreeSet::new(), parks)
    }

    fn build(
        config: &AccessConfig,
        enterprises: &BTreeSet<String>,
        parks: &BTreeSet<String>,
    ) -> Result<Access> {
        let mut grants = Vec::new();
        let mut names = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        for (i, t) in config.token.iter().enumerate() {
            let at = format!("access.token[{i}]");
            if t.name.trim().is_empty() {
                return Err(Error::config(format!("{at}.name"), "must not be empty"));
            }
            if !names.insert(t.name.clone()) {
                return Err(Error::config(
                    format!("{at}.name"),
                    format!("`{}` is used twice", t.name),
                ));
            }
            if t.token.chars().count() < 16 {
                return Err(Error::config(
                    format!("{at}.token"),
                    "at least 16 characters (a long random secret)",
                ));
            }
            if !secrets.insert(t.token.clone()) {
                return Err(Error::config(
                    format!("{at}.token"),
                    "the same secret as another token",
                ));
            }
            let scope = Scope::of(
                &t.enterprises,
                enterprises,
                "enterprise",
                format!("{at}.enterprises"),
            )?;
            let parks = Scope::of(&t.parks, parks, "park", format!("{at}.parks"))?;
            grants.push((
                t.token.as_bytes().to_vec(),
                Caller {
                    name: t.name.clone(),
                    role: t.role,
                    level: t.level,
                    scope,
                    parks,
                },
            ));
        }
        Ok(Access { grants })
    }

    /// True when no token is configured.
    pub fn is_open(&self) -> bool {
        self.grants.is_empty()
    }

    /// The caller presenting `authorization: Bearer TOKEN`.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        if self.is_open() {
            return Ok(Caller::open());
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(Error::Unauthenticated(
                "send `authorization: Bearer <token>` metadata",
            ))?;
        // Compare every grant in full, so timing does not tell how much of
        // a guess was right.
        let mut found = None;
        for (secret, caller) in &self.grants {
            if constant_time_eq(secret, token.as_bytes()) {
                found = Some(caller);
            }
        }
        found
            .cloned()
            .ok_or(Error::Unauthenticated("unknown token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(name: &str, token: &str, role: Role, enterprises: &[&str]) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            token: token.into(),
            role,
            level: Level::Enterprise,
            enterprises: enterprises.iter().map(|e| e.to_string()).collect(),
            parks: vec!["*".into()],
        }
    }

    fn site() -> BTreeSet<String> {
        ["E01", "E02"].iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn tokens_authenticate_to_their_role_and_scope() {
        let config = AccessConfig {
            token: vec![
                spec("e01", "e01-secret-0123456789", Role::Operator, &["E01"]),
                spec("park", "park-secret-0123456789", Role::Viewer, &["*"]),
            ],
            ..AccessConfig::default()
        };
        let access = Access::new(&config, &site()).unwrap();
        let e01 = access
            .authenticate(Some("Bearer e01-secret-0123456789"))
            .unwrap();
        assert!(e01.scope.allows("E01") && !e01.scope.allows("E02"));
        assert!(e01.require(Role::Operator).is_ok());
        let park = access
            .authenticate(Some("Bearer park-secret-0123456789"))
            .unwrap();
        assert!(park.scope.allows("E02"));
        assert!(matches!(
            park.require(Role::Operator),
            Err(Error::PermissionDenied(_))
        ));
        for bad in [
            None,
            Some("e01-secret-0123456789"),
            Some("Bearer e01-secret-012345678"),
            Some("Bearer e01-secret-01234567890"),
        ] {
            assert!(
                matches!(access.authenticate(bad), Err(Error::Unauthenticated(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_regional_token_is_scoped_by_park() {
        let mut county = spec("county", "0123456789abcdefgh", Role::Viewer, &["*"]);
        county.parks = vec!["P1".into()];
        let config = AccessConfig {
            token: vec![county.clone()],
            ..AccessConfig::default()
        };
        let parks: BTreeSet<String> = ["P1".to_owned(), "P2".to_owned()].into();
        let access = Access::regional(&config, &parks).unwrap();
        let caller = access
            .authenticate(Some("Bearer 0123456789abcdefgh"))
            .unwrap();
        assert!(caller.parks.allows("P1") && !caller.parks.allows("P2"));
        // A park instance has no parks to scope by; a region no enterprises.
        let err = Access::new(&config, &site()).unwrap_err().to_string();
        assert!(
            err.contains("access.token[0].parks") && err.contains("no park `P1`"),
            "{err}"
        );
        let mut by_enterprise = county;
        by_enterprise.enterprises = vec!["E01".into()];
        let config = AccessConfig {
            token: vec![by_enterprise],
            ..AccessConfig::default()
        };
        let err = Access::regional(&config, &parks).unwrap_err().to_string();
        assert!(err.contains("no enterprise `E01`"), "{err}");
    }

    #[test]
    fn bad_token_settings_are_refused_with_the_field() {
        let check = |tokens: Vec<TokenSpec>| {
            let config = AccessConfig {
                token: tokens,
                ..AccessConfig::default()
            };
            Access::new(&config, &site())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(check(vec![]).is_empty(), "open");
        assert!(
            check(vec![spec("a", "short", Role::Viewer, &["E01"])])
                .contains("access.token[0].token")
        );
        assert!(
            check(vec![spec(
                "a",
                "0123456789abcdefgh",
                Role::Viewer,
                &["E09"]
            )])
            .contains("no enterprise `E09`")
        );
        assert!(
            check(vec![
                spec("a", "0123456789abcdefgh", Role::Viewer, &["E01"]),
                spec("a", "0123456789abcdefgi", Role::Viewer, &["E01"])
            ])
            .contains("used twice")
        );
    }
}
