//! A real OpenID provider for the tests: `ops/oidc/provider.mjs` (panva's `oidc-provider` from
//! npm, which `ops/test.sh` installs) run with the machine's Node.js, with the keys, clients
//! and users a test names. Restarting it with another key list rotates its keys.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::browser::Page;
use super::{free_port, required_env, unique, Ioc};

/// The audience the provider's tokens for this service carry (its resource indicator).
pub const AUDIENCE: &str = "urn:ioc:api";

/// A signing key of the provider: its id and algorithm (`RS256`, `ES256`).
#[derive(Clone, Copy)]
pub struct Key(pub &'static str, pub &'static str);

pub struct Provider {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    clients: Value,
    users: Value,
}

impl Provider {
    /// A provider on a free port publishing `keys` and signing with the first, tokens living
    /// `ttl_s`; `clients` are `{client_id, client_secret, claims}` (client credentials),
    /// `users` `{id, claims}` (browser logins).
    pub async fn start(keys: &[Key], ttl_s: u64, clients: Value, users: Value) -> Provider {
        Self::start_at(free_port(), keys, ttl_s, clients, users).await
    }

    /// [`Provider::start`] on `port` (chosen before, when ioc must know the issuer first).
    pub async fn start_at(
        port: u16,
        keys: &[Key],
        ttl_s: u64,
        clients: Value,
        users: Value,
    ) -> Provider {
        let mut p = Provider {
            child: None,
            port,
            dir: std::env::temp_dir().join(unique("oidc")),
            clients,
            users,
        };
        p.run(keys, ttl_s).await;
        p
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the provider (as a crash would: no goodbye).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with `keys`, signing with the first: a rotation when
    /// the list changed (keys already made are kept, by id).
    pub async fn restart(&mut self, keys: &[Key], ttl_s: u64) {
        self.stop();
        self.run(keys, ttl_s).await;
    }

    async fn run(&mut self, keys: &[Key], ttl_s: u64) {
        let node = required_env("IOC_TEST_NODE", "Node.js (for oidc-provider)");
        let modules = required_env("IOC_TEST_OIDC_MODULES", "oidc-provider from npm");
        std::fs::create_dir_all(&self.dir).unwrap();
        let cfg = json!({
            "issuer": self.issuer(),
            "port": self.port,
            "audience": AUDIENCE,
            "key_dir": self.dir.join("keys"),
            "keys": keys.iter().map(|Key(kid, alg)| json!({"kid": kid, "alg": alg})).collect::<Vec<_>>(),
            "sign_kid": keys[0].0,
            "ttl_s": ttl_s,
            "clients": self.clients,
            "users": self.users,
        });
        let file = self.dir.join("provider.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("provider.log"))
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/oidc/provider.mjs");
        let child = Command::new(node)
            .arg(script)
            .arg(&file)
            .env("IOC_OIDC_MODULES", modules)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting oidc-provider with node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer());
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait().unwrap() {
                    panic!(
                        "oidc-provider exited with {status}; its log: {}",
                        self.dir.join("provider.log").display()
                    );
                }
            }
            if let Ok(r) = reqwest::get(&discovery).await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider not answering within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An access token for `client_id` (client credentials) for `resource`.
    pub async fn client_token(&self, client_id: &str, resource: &str) -> String {
        let secret = self.clients.as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["client_id"] == client_id)
                .and_then(|c| c["client_secret"].as_str())
        });
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret.expect("a client of this provider")),
                ("scope", "api"),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "token for {client_id}: {v}");
        v["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `[auth.oidc]` section for `issuer`, the test roles mapped from a `groups` claim.
pub fn config(issuer: &str, refresh_s: u64, skew_s: u64) -> String {
    format!(
        r#"
[auth.oidc]
issuer = "{issuer}"
audience = "{AUDIENCE}"
keys_refresh_s = {refresh_s}
clock_skew_s = {skew_s}

[auth.oidc.claims]
roles = "groups"
agency = "agency"
grants = "ioc_grants"

[[auth.oidc.claims.map]]
value = "ioc-admins"
role = "admin"

[[auth.oidc.claims.map]]
value = "ioc-operators"
role = "operator"

[[auth.oidc.claims.map]]
value = "ioc-police"
role = "police"

[[auth.oidc.claims.map]]
value = "ioc-leaders"
role = "leader"

[[auth.oidc.claims.map]]
value = "ioc-agency"
role = "agency"
"#
    )
}

/// The `[auth.oidc.login]` section: the pages log in as `client_id`.
pub fn login_config(client_id: &str, secret: &str, session_max_s: u64) -> String {
    format!(
        "\n[auth.oidc.login]\nclient_id = \"{client_id}\"\nclient_secret = \"{secret}\"\nsession_max_s = {session_max_s}\n"
    )
}

/// Signs in at the provider's own pages (its development login and consent forms) as `who`,
/// until the browser is back at ioc.
pub async fn sign_in_at_provider(page: &mut Page, idp: &Provider, who: &str, back_to: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    // The navigation to the provider starts after the click: until the browser has been
    // there, being at ioc means "not yet gone", not "back".
    let mut went = false;
    loop {
        let at = page.eval("location.href").await;
        let at = at.as_str().unwrap_or_default().to_string();
        if went && at.starts_with(back_to) {
            return;
        }
        if at.starts_with(&idp.issuer()) {
            went = true;
            page.eval(&format!(
                "(() => {{ const l = document.querySelector('input[name=login]');
                   if (l) {{ l.value = '{who}'; document.querySelector('input[name=password]').value = 'mat-khau';
                            document.querySelector('form').submit(); return 'login'; }}
                   const b = document.querySelector('form button[type=submit]');
                   if (b && !window.clicked) {{ window.clicked = true; b.click(); return 'consent'; }}
                   return 'wait'; }})()"
            ))
            .await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still at {at} after 40 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `ioc demo` whose pages sign in at a real provider (`[auth.oidc]` with `[auth.oidc.login]`),
/// with `users` (`{id, claims: {groups, agency}}`) as its accounts.
pub struct SsoDemo {
    pub ioc: Ioc,
    pub idp: Provider,
}

impl SsoDemo {
    pub async fn start(env: &[(String, String)], users: Value) -> SsoDemo {
        let idp_port = free_port();
        let dir = std::env::temp_dir().join(unique("sso-demo"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("ioc.toml");
        let secret = "ioc-pages-secret-0123456789abcdef";
        std::fs::write(
            &cfg,
            config(&format!("http://127.0.0.1:{idp_port}"), 300, 30)
                + &login_config("ioc-pages", secret, 3600),
        )
        .unwrap();
        let mut ioc = Ioc::start(&["demo", "--config", cfg.to_str().unwrap()], env);
        let clients = json!([{"client_id": "ioc-pages", "client_secret": secret, "claims": {},
            "redirect_uris": [ioc.url("/auth/callback")],
            "post_logout_redirect_uris": [ioc.url("/")]}]);
        let idp = Provider::start_at(idp_port, &[Key("a", "RS256")], 600, clients, users).await;
        ioc.ready().await;
        SsoDemo { ioc, idp }
    }

    /// Signs `who` in through the provider, from the page asked for (`path`, with its
    /// query) and back to it.
    pub async fn sign_in(&self, page: &mut Page, who: &str, path: &str) {
        let mut login = reqwest::Url::parse(&self.ioc.url("/auth/login")).unwrap();
        login.query_pairs_mut().append_pair("next", path);
        page.goto(login.as_str()).await;
        sign_in_at_provider(page, &self.idp, who, &self.ioc.url("/")).await;
    }
}
