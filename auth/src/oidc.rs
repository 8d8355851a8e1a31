//! The province's single sign-on: access tokens from an OpenID Connect provider (RS256, ES256
//! or PS256 JWTs), checked against the keys the provider publishes (discovery, then its
//! JWKS), its issuer, our audience and their times with a bounded clock skew, and turned
//! into our [`Claims`] by the configured claim map. A token that maps to no role is refused
//! with a reason.
//!
//! The keys are fetched at start and every `keys_refresh_s`; a token signed with a key not
//! yet known makes one refresh at once (at most one per [`MIN_REFRESH_GAP`]), so a key
//! rotation is picked up without a restart. A provider that is briefly down changes nothing:
//! the keys last fetched stay in use up to `keys_max_age_s`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::{check_times, AuthError, Claims, Grant, Role};

/// Least time between two refreshes made because of an unknown key: a flood of tokens with
/// made-up key ids costs one request to the provider per gap.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(10);
/// Largest clock skew the configuration may allow, seconds.
pub const MAX_CLOCK_SKEW_S: u64 = 300;
/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// `[auth.oidc]`: the provider, what we are to it, and how its claims map to our roles.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer exactly as the provider names itself (`iss`), e.g.
    /// `https://sso.haugiang.gov.vn/realms/hg`; its discovery document is under it.
    pub issuer: String,
    /// Our identifier at the provider: the `aud` its tokens for us carry.
    pub audience: String,
    /// How often the keys are fetched again, seconds.
    #[serde(default = "default_refresh")]
    pub keys_refresh_s: u64,
    /// How long keys last fetched stay in use while the provider cannot be reached, seconds.
    #[serde(default = "default_max_age")]
    pub keys_max_age_s: u64,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, seconds (at most 300).
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    #[serde(default)]
    pub claims: ClaimMap,
    /// The pages' login at the provider (authorization code with PKCE); without it, only
    /// bearer tokens from the provider are accepted.
    #[serde(default)]
    pub login: Option<crate::login::LoginConfig>,
}

fn default_refresh() -> u64 {
    300
}
fn default_max_age() -> u64 {
    86_400
}
fn default_skew() -> u64 {
    60
}

/// Where in the provider's token our claims are, and which of its roles or groups are ours.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMap {
    /// The claim holding the person's roles or groups (a string or a list); a dotted path
    /// reaches into objects (`realm_access.roles`).
    pub roles: String,
    /// The claim naming the person's agency or school (agency and school roles need it).
    pub agency: String,
    /// The claim listing our grants (`camera_images`, `school_cameras`, …).
    pub grants: String,
    /// The provider's role or group values that are ours, in order: the first one the token
    /// carries gives the role.
    pub map: Vec<RoleRule>,
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self {
            roles: "roles".into(),
            agency: "agency".into(),
            grants: "ioc_grants".into(),
            map: Vec::new(),
        }
    }
}

/// One of the provider's values and the role it stands for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub value: String,
    pub role: Role,
}

impl OidcConfig {
    /// What is wrong with this configuration, named by key.
    pub fn check(&self) -> Result<(), String> {
        let url =
            reqwest::Url::parse(&self.issuer).map_err(|e| format!("auth.oidc.issuer: {e}"))?;
        if url.scheme() != "https" && !is_loopback(&url) {
            return Err(
                "auth.oidc.issuer: must be https (http only on loopback, for tests)".into(),
            );
        }
        if self.audience.trim().is_empty() {
            return Err("auth.oidc.audience: required".into());
        }
        if self.clock_skew_s > MAX_CLOCK_SKEW_S {
            return Err(format!(
                "auth.oidc.clock_skew_s: at most {MAX_CLOCK_SKEW_S}"
            ));
        }
        if self.claims.map.is_empty() {
            return Err("auth.oidc.claims.map: no role would ever be given".into());
        }
        if let Some(r) = self.claims.map.iter().find(|r| r.role == Role::Sensor) {
            return Err(format!(
                "auth.oidc.claims.map: {:?} → sensor: devices use this service's own tokens",
                r.value
            ));
        }
        Ok(())
    }
}

pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// Why the keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{what}: {reason}")]
    Fetch { what: &'static str, reason: String },
    #[error("the provider names itself {found:?}, not the configured issuer {configured:?}")]
    WrongIssuer { found: String, configured: String },
    #[error("the provider publishes no key this service can use")]
    NoKeys,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
    endpoints: Option<Endpoints>,
}

/// Where the provider's login, token, logout and revocation are, from its discovery document.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub end_session: Option<String>,
    pub revocation: Option<String>,
}

impl Endpoints {
    fn of(d: &Value) -> Option<Self> {
        let s = |k: &str| d[k].as_str().map(str::to_string);
        Some(Self {
            authorization: s("authorization_endpoint")?,
            token: s("token_endpoint")?,
            end_session: s("end_session_endpoint"),
            revocation: s("revocation_endpoint"),
        })
    }
}

/// Checks the provider's tokens; share it (`Arc`) and run [`OidcVerifier::keep_fresh`].
pub struct OidcVerifier {
    cfg: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Serialises refreshes and remembers when the last one made for an unknown key started.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    pub fn new(cfg: OidcConfig) -> Result<Self, String> {
        cfg.check()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("auth.oidc: {e}"))?;
        Ok(Self {
            cfg,
            http,
            keys: RwLock::new(Keys::default()),
            refreshing: tokio::sync::Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// The provider's endpoints, once its discovery document has been read.
    pub fn endpoints(&self) -> Option<Endpoints> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .endpoints
            .clone()
    }

    /// The HTTP client the provider is reached with (timeouts, no redirects).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// For `/readyz`: how many keys are held and how old they are.
    pub fn report(&self) -> Value {
        let k = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let age = k.fetched.map(|t| t.elapsed().as_secs());
        let fresh = age.is_some_and(|a| a <= self.cfg.keys_max_age_s);
        serde_json::json!({"ready": fresh && !k.by_kid.is_empty(), "issuer": self.cfg.issuer,
                           "keys": k.by_kid.len(), "age_s": age})
    }

    async fn get_json(&self, what: &'static str, url: &str) -> Result<Value, OidcError> {
        let fail = |reason: String| OidcError::Fetch { what, reason };
        let parsed = reqwest::Url::parse(url).map_err(|e| fail(e.to_string()))?;
        if parsed.scheme() != "https" && !is_loopback(&parsed) {
            return Err(fail(format!("{url} is not https")));
        }
        let resp = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(fail(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
    }

    /// Fetches the discovery document and the key set, and replaces the keys held; the
    /// number of keys now held.
    pub async fn refresh(&self) -> Result<usize, OidcError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let d = self.get_json("discovery", &discovery_url).await?;
        let found = d["issuer"].as_str().unwrap_or_default();
        if found != self.cfg.issuer {
            return Err(OidcError::WrongIssuer {
                found: found.into(),
                configured: self.cfg.issuer.clone(),
            });
        }
        let jwks_uri = d["jwks_uri"].as_str().ok_or(OidcError::Fetch {
            what: "discovery",
            reason: "no jwks_uri".into(),
        })?;
        let set: JwkSet =
            serde_json::from_value(self.get_json("jwks", jwks_uri).await?).map_err(|e| {
                OidcError::Fetch {
                    what: "jwks",
                    reason: e.to_string(),
                }
            })?;
        let by_kid = usable_keys(&set);
        if by_kid.is_empty() {
            return Err(OidcError::NoKeys);
        }
        let n = by_kid.len();
        let mut k = self.keys.write().unwrap_or_else(|e| e.into_inner());
        k.by_kid = by_kid;
        k.fetched = Some(Instant::now());
        k.endpoints = Endpoints::of(&d);
        Ok(n)
    }

    /// A refresh now unless one started less than [`MIN_REFRESH_GAP`] ago (then it waits for
    /// that one). Failures are logged: the keys held stay.
    pub async fn refresh_soon(&self) {
        let mut last = self.refreshing.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_GAP) {
            return;
        }
        // Only these refreshes count against the gap: a key published just after the
        // periodic refresh is fetched at once.
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            warn!(error = %e, issuer = %self.cfg.issuer, "the provider's keys could not be refreshed; the keys held stay");
        }
    }

    /// Refreshes the keys every `keys_refresh_s` (sooner again after a failure) for ever.
    pub async fn keep_fresh(&self) {
        let every = Duration::from_secs(self.cfg.keys_refresh_s.max(10));
        loop {
            // Held while fetching: a token with a new key waits for this fetch, not another.
            let guard = self.refreshing.lock().await;
            let fetched = self.refresh().await;
            drop(guard);
            let wait = match fetched {
                Ok(n) => {
                    info!(keys = n, issuer = %self.cfg.issuer, "provider keys fetched");
                    every
                }
                Err(e) => {
                    warn!(error = %e, issuer = %self.cfg.issuer, "the provider's keys could not be fetched; the keys held stay");
                    every.min(Duration::from_secs(15))
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Checks a provider's token and maps it to our claims. [`AuthError::UnknownKey`] means
    /// its key is not among those held: [`Self::refresh_soon`], then try once more.
    pub fn verify(&self, token: &str, header: &Header) -> Result<Claims, AuthError> {
        let refuse = |r: &str| AuthError::Invalid(r.to_string());
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::PS256
        ) {
            return Err(refuse(
                "the provider's tokens are signed with RS256, ES256 or PS256",
            ));
        }
        // Named first, for a clear reason: a token from another provider has keys we do not
        // hold either. (Unverified here; the signature check below decides nothing less.)
        let iss = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .ok()
            .and_then(|d| d.claims["iss"].as_str().map(str::to_string));
        if iss.as_deref() != Some(self.cfg.issuer.as_str()) {
            return Err(refuse(
                "the token is from another issuer than this service's provider",
            ));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| refuse("the token names no signing key (kid)"))?;
        let (key, alg) = {
            let k = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if k.fetched
                .is_some_and(|t| t.elapsed().as_secs() > self.cfg.keys_max_age_s)
            {
                return Err(refuse(
                    "the provider's keys could not be refreshed for too long; try again later",
                ));
            }
            match k.by_kid.get(kid) {
                Some((key, alg)) => (key.clone(), *alg),
                None => return Err(AuthError::UnknownKey),
            }
        };
        if alg != header.alg {
            return Err(refuse("the token's algorithm is not its key's"));
        }
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.clock_skew_s;
        v.validate_nbf = true;
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let raw = decode::<Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(provider_refusal(&e)))?;
        let claims = map_claims(&self.cfg.claims, &raw)?;
        check_times(&claims, chrono::Utc::now().timestamp())?;
        Ok(claims)
    }
}

/// Why a provider's token was refused, in our words.
fn provider_refusal(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidIssuer => "the token is from another issuer than this service's provider".into(),
        K::InvalidAudience => "the token is not meant for this service (audience)".into(),
        _ => crate::refusal(e),
    }
}

/// The keys of `set` this service can verify with, by key id: signing keys (not encryption
/// ones) of RSA or P-256, with their algorithm (stated, or RS256 / ES256 by their type).
fn usable_keys(set: &JwkSet) -> HashMap<String, (DecodingKey, Algorithm)> {
    let mut out = HashMap::new();
    for jwk in &set.keys {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS256)) => Algorithm::PS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            out.insert(kid, (key, alg));
        }
    }
    out
}

/// The value at a dotted path of the claims.
fn at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, k| v.get(k))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Our claims from the provider's: the first mapped role the token carries, its agency
/// (required for agency and school roles), its grants (unknown ones ignored).
pub fn map_claims(map: &ClaimMap, raw: &Value) -> Result<Claims, AuthError> {
    let refuse = |r: String| AuthError::Invalid(r);
    let sub = raw["sub"].as_str().unwrap_or_default();
    if sub.is_empty() || sub.len() > 200 {
        return Err(refuse("the token names no usable subject".into()));
    }
    let theirs = strings(at(raw, &map.roles));
    let role = map
        .map
        .iter()
        .find(|r| theirs.contains(&r.value))
        .map(|r| r.role)
        .ok_or_else(|| {
            refuse(format!(
                "the token maps to no role of this service (its {} claim holds {:?}); ask the provider's administrators for an IOC role",
                map.roles, theirs
            ))
        })?;
    let agency = at(raw, &map.agency)
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    if matches!(role, Role::Agency | Role::School) && agency.is_none() {
        return Err(refuse(format!(
            "role {role} needs the {} claim naming the agency or school",
            map.agency
        )));
    }
    let grants: Vec<Grant> = strings(at(raw, &map.grants))
        .iter()
        .filter_map(|g| serde_json::from_value(Value::String(g.clone())).ok())
        .collect();
    let exp = raw["exp"].as_i64().unwrap_or_default();
    let iat = raw["iat"]
        .as_i64()
        .unwrap_or(chrono::Utc::now().timestamp());
    Ok(Claims {
        sub: sub.to_string(),
        role,
        agency,
        grants,
        stations: Vec::new(),
        iat,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map() -> ClaimMap {
        ClaimMap {
            roles: "realm_access.roles".into(),
            map: vec![
                RoleRule {
                    value: "ioc-admin".into(),
                    role: Role::Admin,
                },
                RoleRule {
                    value: "ioc-operator".into(),
                    role: Role::Operator,
                },
                RoleRule {
                    value: "so-nganh".into(),
                    role: Role::Agency,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_first_mapped_role_wins_and_no_role_is_refused_with_what_the_token_held() {
        let raw = json!({"sub": "u1", "exp": 2, "iat": 1,
            "realm_access": {"roles": ["offline_access", "ioc-operator", "ioc-admin"]},
            "ioc_grants": ["camera_images", "no-such-grant"]});
        let c = map_claims(&map(), &raw).unwrap();
        assert_eq!(
            c.role,
            Role::Admin,
            "the configuration's order, not the token's"
        );
        assert_eq!(c.grants, vec![Grant::CameraImages]);
        let none = json!({"sub": "u2", "exp": 2, "realm_access": {"roles": ["khach"]}});
        let e = map_claims(&map(), &none).unwrap_err().to_string();
        assert!(e.contains("maps to no role") && e.contains("khach"), "{e}");
        let agency = json!({"sub": "u3", "exp": 2, "realm_access": {"roles": "so-nganh"}});
        assert!(map_claims(&map(), &agency)
            .unwrap_err()
            .to_string()
            .contains("agency claim"));
        let with = json!({"sub": "u3", "exp": 2, "realm_access": {"roles": "so-nganh"}, "agency": "hg-stnmt"});
        assert_eq!(
            map_claims(&map(), &with).unwrap().agency.as_deref(),
            Some("hg-stnmt")
        );
    }

    #[test]
    fn a_configuration_names_what_is_wrong() {
        let ok = OidcConfig {
            issuer: "https://sso.haugiang.gov.vn/realms/hg".into(),
            audience: "ioc".into(),
            keys_refresh_s: 300,
            keys_max_age_s: 86_400,
            clock_skew_s: 60,
            claims: map(),
            login: None,
        };
        assert_eq!(ok.check(), Ok(()));
        let http = OidcConfig {
            issuer: "http://sso.haugiang.gov.vn".into(),
            ..ok.clone()
        };
        assert!(http.check().unwrap_err().contains("https"));
        let local = OidcConfig {
            issuer: "http://127.0.0.1:9000".into(),
            ..ok.clone()
        };
        assert_eq!(local.check(), Ok(()));
        let skew = OidcConfig {
            clock_skew_s: 3600,
            ..ok.clone()
        };
        assert!(skew.check().unwrap_err().contains("clock_skew_s"));
        let mut sensor = ok.clone();
        sensor.claims.map.push(RoleRule {
            value: "iot".into(),
            role: Role::Sensor,
        });
        assert!(sensor.check().unwrap_err().contains("own tokens"));
    }
}
