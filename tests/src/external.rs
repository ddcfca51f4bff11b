//! What the end-to-end tests stand up beside the service: Debian's
//! mosquitto as an external broker ([`Mosquitto`]), and a PKI for TLS and
//! client certificates ([`Pki`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// How [`Mosquitto::start_secured`] locks the broker down.
#[derive(Debug, Clone, Default)]
pub struct MosquittoSecurity {
    /// The ACL file's text (e.g. from `hazardwatch gateway mosquitto-acl`).
    pub acl: String,
    /// User names and passwords, hashed into mosquitto's password file.
    pub users: Vec<(String, String)>,
    /// CA, certificate and key files of a TLS-only listener.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

/// A Debian mosquitto broker on a free port, stopped on drop: the external
/// broker that keeps a subscriber's persistent session (and its queued
/// QoS 1 messages) while the service is down.
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` when it is not installed and
    /// `HAZARDWATCH_REQUIRE_MOSQUITTO` is not set (the test command sets it
    /// after installing mosquitto, so there the test cannot be skipped).
    pub fn start() -> anyhow::Result<Option<Mosquitto>> {
        Self::start_secured(None)
    }

    /// Starts mosquitto as a park would run it in production: no anonymous
    /// clients, a password file, an ACL file, client ids bound to user
    /// names, and (with `tls`) TLS only. `None` without mosquitto, as
    /// [`Mosquitto::start`].
    pub fn start_secured(
        security: Option<&MosquittoSecurity>,
    ) -> anyhow::Result<Option<Mosquitto>> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists());
        let Some(bin) = bin else {
            anyhow::ensure!(
                std::env::var_os("HAZARDWATCH_REQUIRE_MOSQUITTO").is_none(),
                "mosquitto is required (HAZARDWATCH_REQUIRE_MOSQUITTO) but not installed"
            );
            eprintln!("mosquitto not installed: skipping (apt-get install mosquitto)");
            return Ok(None);
        };
        let port = hazardwatch_ingest::broker::resolve_port("127.0.0.1:0".parse()?)?.port();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        // Queue without limit for a disconnected persistent session: the
        // default drops QoS 1 messages past 1000. Sessions and queued
        // messages are saved when it stops (SIGTERM), so a restart keeps
        // them.
        // Started as root, mosquitto runs as its own user: it must be able
        // to reach and write its store.
        let store = dir.path().join("store");
        std::fs::create_dir(&store)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777))?;
        }
        let mut text = format!(
            "per_listener_settings false\nlistener {port} 127.0.0.1\n\
             persistence true\npersistence_location {}/\nautosave_interval 0\n\
             max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 100\n\
             log_dest stderr\nlog_type error\nlog_type warning\n",
            store.display()
        );
        match security {
            None => text.push_str("allow_anonymous true\n"),
            Some(sec) => {
                let passwd = dir.path().join("passwd");
                std::fs::write(&passwd, "")?;
                for (user, password) in &sec.users {
                    let status = std::process::Command::new("mosquitto_passwd")
                        .arg("-b")
                        .arg(&passwd)
                        .arg(user)
                        .arg(password)
                        .status()
                        .context("running mosquitto_passwd")?;
                    anyhow::ensure!(status.success(), "mosquitto_passwd failed for {user}");
                }
                let acl = dir.path().join("acl");
                std::fs::write(&acl, &sec.acl)?;
                text.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\nacl_file {}\nuse_username_as_clientid true\n",
                    passwd.display(),
                    acl.display()
                ));
                if let Some((ca, cert, key)) = &sec.tls {
                    text.push_str(&format!(
                        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate false\n",
                        ca.display(),
                        cert.display(),
                        key.display()
                    ));
                }
            }
        }
        std::fs::write(&conf, text)?;
        let child = Self::spawn(bin, &conf, port)?;
        Ok(Some(Mosquitto {
            child,
            port,
            bin: bin.to_owned(),
            conf,
            _dir: dir,
        }))
    }

    fn spawn(bin: &Path, conf: &Path, port: u16) -> anyhow::Result<std::process::Child> {
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(conf)
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < until,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child)
    }

    /// Stops the broker (SIGTERM: it saves its sessions and queued
    /// messages), waits `down`, and starts it again on the same port.
    pub fn restart(&mut self, down: Duration) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM mosquitto failed");
        self.child.wait()?;
        std::thread::sleep(down);
        self.child = Self::spawn(&self.bin, &self.conf, self.port)?;
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test PKI: a CA for the gateways (which also signs the broker's
/// certificate), and another CA nobody trusts.
pub struct Pki {
    /// Where the files are written.
    pub dir: tempfile::TempDir,
    /// The park's CA.
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// A CA nobody trusts.
    pub stranger: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// Two fresh CAs in a temporary directory.
    pub fn new() -> anyhow::Result<Pki> {
        let ca = |name: &str| -> anyhow::Result<_> {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            Ok(rcgen::CertifiedIssuer::self_signed(
                params,
                rcgen::KeyPair::generate()?,
            )?)
        };
        Ok(Pki {
            dir: tempfile::tempdir()?,
            ca: ca("Test park gateway CA")?,
            stranger: ca("Somebody else's CA")?,
        })
    }

    /// Writes a certificate for `cn` (with `sans`) signed by `issuer`,
    /// valid over `years` (from, to), and its key; returns their paths.
    pub fn issue(
        &self,
        name: &str,
        cn: &str,
        sans: &[&str],
        issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        years: (i32, i32),
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, issuer)?;
        let (c, k) = (
            self.dir.path().join(format!("{name}.crt")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }

    /// The park CA's certificate, written to a file.
    pub fn ca_file(&self) -> anyhow::Result<PathBuf> {
        let p = self.dir.path().join("ca.crt");
        std::fs::write(&p, self.ca.pem())?;
        Ok(p)
    }
}
