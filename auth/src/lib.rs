//! Who is calling: roles, signed bearer tokens (HS256 JWT with `sub`, `role`, optional
//! `agency`, `grants`, `stations`, `exp`), the province's single sign-on ([`oidc`]: its
//! tokens checked and mapped to roles), the pages' login ([`login`]: the session an
//! HTTP-only cookie), and axum extractors that admit a request only with a valid token
//! ([`Caller`] from the header or the session cookie, a write with the cookie only with the
//! page's CSRF header; [`WsCaller`] also from a single-use websocket ticket in the upgrade's
//! URL, never a token).
//!
//! Media tickets ([`MediaTicket`]) carry one admitted camera access from the API to a video
//! worker in another process; [`UsedTickets`] makes them single-use. [`limits`] says how
//! often a caller may write.
//!
//! It owns *authentication* and the rules of what a caller may see: the role -> layer rule,
//! the camera scope and the sensitive-matter scope. It must never log or return a token or
//! the signing secret, never put a token in a URL, and never decide anything from unsigned
//! input.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use model::Layer;

mod cameras;
pub mod limits;
pub mod login;
pub mod oidc;
mod ticket;
mod ws_ticket;
pub use cameras::{CameraUse, Grant};
use serde::{Deserialize, Serialize};
pub use ticket::{MediaTicket, UsedTickets, TICKET_LEEWAY_S};
pub use ws_ticket::WS_TICKET_TTL_S;

/// What a caller may do, from least to most privileged in spirit (see DOMAIN.md, Users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// IOC centre operators: every layer live.
    Operator,
    /// Police: cameras and public-order reports (later issues); environment layers.
    Police,
    /// Leaders: summaries and KPIs; environment layers.
    Leader,
    /// An agency: its own stations' data and its reports.
    Agency,
    /// Registry, users, configuration.
    Admin,
    /// A device or gateway that may only push readings.
    Sensor,
    /// A citizen, or the provincial app acting for one: files field reports, follows and
    /// reopens its own, sees open environmental data.
    Citizen,
    /// A school (its `agency` claim names it): its own school's cameras only.
    School,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Operator,
        Role::Police,
        Role::Leader,
        Role::Agency,
        Role::Admin,
        Role::Sensor,
        Role::Citizen,
        Role::School,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Police => "police",
            Role::Leader => "leader",
            Role::Agency => "agency",
            Role::Admin => "admin",
            Role::Sensor => "sensor",
            Role::Citizen => "citizen",
            Role::School => "school",
        }
    }

    /// May this role see `layer` on maps and feeds?
    pub fn can_view(self, layer: Layer) -> bool {
        match self {
            Role::Sensor => false,
            Role::School => layer == Layer::Cameras,
            // Open data only.
            Role::Citizen => matches!(
                layer,
                Layer::Salinity | Layer::AirQuality | Layer::Units | Layer::Rivers
            ),
            // An agency works its own queue through the reports API, not on the map (the
            // layer carries public-order reports that are police matters).
            // Nor the control room's wall layouts.
            Role::Agency => !matches!(layer, Layer::Reports | Layer::Cameras | Layer::Layouts),
            // Indicators are the leaders' and the control room's; an agency sees its own
            // (the record filter, `replica::visible_with`), police nothing.
            Role::Police if layer == Layer::Indicators => false,
            // Wall layouts are the control room's: who runs a wall (operators, admins) and
            // who watches one (police, leaders).
            Role::Operator | Role::Police | Role::Leader | Role::Admin
                if layer == Layer::Layouts =>
            {
                true
            }
            Role::Operator | Role::Police | Role::Leader | Role::Admin => match layer {
                Layer::Salinity
                | Layer::AirQuality
                | Layer::Units
                | Layer::Alerts
                | Layer::Rivers
                | Layer::Zones
                | Layer::Reports
                | Layer::Cameras
                | Layer::Indicators
                | Layer::Layouts => true,
            },
        }
    }

    /// May this role file field reports?
    pub fn can_report(self) -> bool {
        !matches!(self, Role::Sensor)
    }

    /// May this role push sensor readings?
    pub fn can_ingest(self) -> bool {
        matches!(self, Role::Sensor | Role::Admin | Role::Operator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// The claims a token carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user or device.
    pub sub: String,
    pub role: Role,
    /// For agency users: which agency; for school users: which school.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// Rights beyond the role's (see [`Grant`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// For sensor devices and gateways: the stations they may report for (without it, a
    /// sensor may report for the stations of its `agency`, and with neither, for none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stations: Vec<String>,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// Who this is across roles: `role:sub`. A school token with a citizen's `sub` is not
    /// that citizen.
    pub fn principal(&self) -> String {
        format!("{}:{}", self.role, self.sub)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token refused: {0}")]
    Invalid(String),
    #[error("the signing secret must be at least 32 bytes")]
    WeakSecret,
    /// Signed by a key of the provider not (yet) among those held.
    #[error("token refused: it is signed with a key the provider does not publish")]
    UnknownKey,
}

/// Longest lifetime (`exp - iat`) a token may claim: a device token is re-issued yearly.
pub const MAX_TOKEN_LIFETIME_DAYS: i64 = 400;
/// Clock skew allowed between the issuer and us, seconds.
pub const TOKEN_LEEWAY_S: i64 = 30;

/// Signs and verifies this service's own tokens (HS256, one shared secret: service accounts,
/// devices, the demo) and, when configured, checks the province's single sign-on tokens.
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    oidc: Option<Arc<oidc::OidcVerifier>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

/// Why a token was refused, in our words: a caller is told what to fix, never how the
/// library failed (which would help an attacker probe it).
fn refusal(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired",
        K::ImmatureSignature => "the token is not valid yet",
        K::InvalidSignature => "the token's signature does not verify",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "the token is not signed with HS256",
        K::MissingRequiredClaim(_) => "the token lacks a required claim",
        K::InvalidAudience => "the token is not meant for this use",
        _ => "the token is malformed",
    }
    .to_string()
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::WeakSecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            oidc: None,
        })
    }

    /// Also accepts the provider's tokens, checked by `verifier`.
    pub fn with_oidc(mut self, verifier: Arc<oidc::OidcVerifier>) -> Self {
        self.oidc = Some(verifier);
        self
    }

    /// The provider's verifier, if any.
    pub fn oidc(&self) -> Option<&Arc<oidc::OidcVerifier>> {
        self.oidc.as_ref()
    }

    /// [`Self::verify`], and for a provider's token signed with a key not yet held, one
    /// refresh of the provider's keys and a second try (a key rotation, without restart).
    pub async fn verify_async(&self, token: &str) -> Result<Claims, AuthError> {
        match (self.verify(token), &self.oidc) {
            (Err(AuthError::UnknownKey), Some(o)) => {
                o.refresh_soon().await;
                self.verify(token)
            }
            (r, _) => r,
        }
    }

    /// A token for `sub` with `role`, valid for `ttl`.
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        agency: Option<&str>,
        ttl: chrono::Duration,
    ) -> String {
        self.issue_granted(sub, role, agency, &[], ttl)
    }

    /// A token for `sub` with `role` and `grants` beyond the role, valid for `ttl`.
    pub fn issue_granted(
        &self,
        sub: &str,
        role: Role,
        agency: Option<&str>,
        grants: &[Grant],
        ttl: chrono::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            role,
            agency: agency.map(str::to_string),
            grants: grants.to_vec(),
            stations: vec![],
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        self.sign(&claims)
    }

    /// Signs `claims` as they are (service accounts with station lists, tests of refusals).
    pub fn sign(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The claims of `token` if it is signed with our secret, names a subject, is valid now
    /// (`nbf`, `iat` and `exp` within [`TOKEN_LEEWAY_S`]) and claims no longer a lifetime than
    /// [`MAX_TOKEN_LIFETIME_DAYS`].
    /// A token of this service (HS256), or of the provider when one is configured (any other
    /// algorithm it uses).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if let Some(o) = &self.oidc {
            if let Ok(h) = jsonwebtoken::decode_header(token) {
                if h.alg != Algorithm::HS256 {
                    return o.verify(token, &h);
                }
            }
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = TOKEN_LEEWAY_S as u64;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        let claims = decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(refusal(&e)))?;
        check_times(&claims, chrono::Utc::now().timestamp())?;
        Ok(claims)
    }
}

/// The checks the library does not make: a subject, an issue time not in the future, a
/// bounded lifetime.
fn check_times(c: &Claims, now: i64) -> Result<(), AuthError> {
    if c.sub.trim().is_empty() {
        return Err(AuthError::Invalid("the token names no subject".into()));
    }
    if c.iat > now + TOKEN_LEEWAY_S {
        return Err(AuthError::Invalid(
            "the token is issued in the future".into(),
        ));
    }
    let max = MAX_TOKEN_LIFETIME_DAYS * 86_400;
    if c.exp.saturating_sub(c.iat) > max || c.exp.saturating_sub(now) > max {
        return Err(AuthError::Invalid(format!(
            "the token claims a lifetime over {MAX_TOKEN_LIFETIME_DAYS} days"
        )));
    }
    Ok(())
}

/// An authenticated caller; use as an axum extractor. The state must give an
/// `Arc<Authenticator>` through `FromRef`.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    pub fn role(&self) -> Role {
        self.0.role
    }

    /// `Err(403)` unless the role may see `layer`.
    pub fn require_view(&self, layer: Layer) -> Result<(), Rejection> {
        if self.role().can_view(layer) {
            Ok(())
        } else {
            Err(Rejection::forbidden(format!(
                "role {} may not see layer {layer}",
                self.role()
            )))
        }
    }
}

/// A refused request: 401 (who are you?) or 403 (not for you).
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    reason: String,
}

impl Rejection {
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }

    fn unauthorized(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }
}

impl From<Rejection> for api_error::ApiError {
    fn from(r: Rejection) -> Self {
        if r.status == StatusCode::UNAUTHORIZED {
            api_error::ApiError::unauthorized(r.reason)
        } else {
            api_error::ApiError::forbidden(r.reason)
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        api_error::ApiError::from(self).into_response()
    }
}

/// The caller's token: the bearer header (programs), or the pages' session cookie.
pub fn token_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    bearer_of(headers).or_else(|| login::session_of(headers))
}

/// The bearer token of a request's `Authorization` header.
pub fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The `ticket` query parameter of a websocket upgrade (browsers cannot set headers there);
/// only [`WsCaller`] reads it, and it is a websocket ticket, never an access token.
fn query_ticket(parts: &Parts) -> Option<String> {
    let is_ws = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_ws {
        return None;
    }
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("ticket="))
        .map(str::to_string)
}

async fn admit<S>(state: &S, token: Option<String>) -> Result<Claims, Rejection>
where
    Arc<Authenticator>: FromRef<S>,
{
    let auth = Arc::<Authenticator>::from_ref(state);
    let token = token.ok_or_else(|| {
        Rejection::unauthorized("sign in (session cookie) or send a bearer token")
    })?;
    auth.verify_async(&token)
        .await
        .map_err(|e| Rejection::unauthorized(e.to_string()))
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(t) = bearer_of(&parts.headers) {
            return admit(state, Some(t.to_string())).await.map(Caller);
        }
        let session = login::session_of(&parts.headers);
        // A cross-site form cannot set a header: a write with the cookie must carry one.
        if session.is_some()
            && !parts.method.is_safe()
            && parts.headers.get(login::CSRF_HEADER).is_none()
        {
            return Err(Rejection::forbidden(
                "a page's write must carry the x-ioc-csrf header",
            ));
        }
        admit(state, session.map(str::to_string)).await.map(Caller)
    }
}

/// The caller of a websocket upgrade: the bearer header (programs), or a websocket ticket in
/// the `ticket` query parameter (pages), good for one connection.
#[derive(Debug, Clone)]
pub struct WsCaller(pub Claims);

impl<S> FromRequestParts<S> for WsCaller
where
    Arc<Authenticator>: FromRef<S>,
    Arc<UsedTickets>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer_of(&parts.headers) {
            return admit(state, Some(token.to_string())).await.map(WsCaller);
        }
        let Some(ticket) = query_ticket(parts) else {
            let session = login::session_of(&parts.headers).ok_or_else(|| {
                Rejection::unauthorized(
                    "sign in (session cookie), or send a bearer token or a ticket from POST /ws/tickets in ?ticket=",
                )
            })?;
            // Another site's page cannot open a feed with this site's cookie.
            if !login::same_origin(&parts.headers, "") {
                return Err(Rejection::forbidden(
                    "a websocket opened with the session cookie must come from this site",
                ));
            }
            return admit(state, Some(session.to_string())).await.map(WsCaller);
        };
        let auth = Arc::<Authenticator>::from_ref(state);
        let (claims, exp) = auth
            .verify_ws_ticket(&ticket)
            .map_err(|e| Rejection::unauthorized(e.to_string()))?;
        let used = Arc::<UsedTickets>::from_ref(state);
        if !used.first_use(&ticket, exp, chrono::Utc::now().timestamp()) {
            return Err(Rejection::unauthorized(
                "the ticket was used already; ask for another",
            ));
        }
        Ok(WsCaller(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn issued_tokens_verify_with_their_role() {
        let a = auth();
        let t = a.issue("op1", Role::Operator, None, chrono::Duration::hours(1));
        assert_eq!(a.verify(&t).unwrap().role, Role::Operator);
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let a = auth();
        let t = a.issue("op1", Role::Leader, None, chrono::Duration::hours(1));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "x".into(),
                role: Role::Admin,
                agency: None,
                grants: vec![],
                stations: vec![],
                iat: 0,
                exp: i64::MAX / 2,
            },
            &EncodingKey::from_secret(&[8u8; 32]),
        )
        .unwrap();
        let forged_payload = forged.split('.').nth(1).unwrap().to_string();
        parts[1] = &forged_payload;
        assert!(a.verify(&parts.join(".")).is_err(), "payload swapped");
        assert!(a.verify(&forged).is_err(), "signed with another secret");
        let old = a.issue("op1", Role::Operator, None, chrono::Duration::hours(-2));
        assert!(a.verify(&old).is_err(), "expired");
    }

    fn claims(sub: &str, iat: i64, exp: i64) -> Claims {
        Claims {
            sub: sub.into(),
            role: Role::Operator,
            agency: None,
            grants: vec![],
            stations: vec![],
            iat,
            exp,
        }
    }

    #[test]
    fn tokens_from_the_future_for_a_century_or_of_nobody_are_refused() {
        let a = auth();
        let now = chrono::Utc::now().timestamp();
        let refused = |c: Claims| a.verify(&a.sign(&c)).unwrap_err().to_string();
        assert!(refused(claims("op", now + 3600, now + 7200)).contains("future"));
        assert!(refused(claims("op", now, now + 100 * 365 * 86_400)).contains("lifetime"));
        assert!(refused(claims("", now, now + 60)).contains("subject"));
        assert!(refused(claims("  ", now, now + 60)).contains("subject"));
        // nbf in the future: the library checks it once asked to.
        let mut v = serde_json::to_value(claims("op", now, now + 600)).unwrap();
        v["nbf"] = (now + 3600).into();
        let t = encode(
            &Header::new(Algorithm::HS256),
            &v,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert!(a
            .verify(&t)
            .unwrap_err()
            .to_string()
            .contains("not valid yet"));
        assert!(a.verify(&a.sign(&claims("op", now, now + 600))).is_ok());
    }

    #[test]
    fn refusals_do_not_echo_library_internals() {
        let a = auth();
        for bad in ["x", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", &"A".repeat(5000)] {
            let e = a.verify(bad).unwrap_err().to_string();
            assert_eq!(e, "token refused: the token is malformed", "{bad:.20}");
        }
    }

    #[test]
    fn weak_secrets_are_refused_and_sensors_see_no_layers() {
        assert!(Authenticator::new(b"short").is_err());
        assert!(Layer::ALL.iter().all(|l| !Role::Sensor.can_view(*l)));
        assert!(Role::Sensor.can_ingest() && !Role::Leader.can_ingest());
    }
}
