//! Who is calling: roles, signed bearer tokens (HS256 JWT with `sub`, `role`, optional
//! `agency`, `exp`), and an axum extractor that admits a request only with a valid token.
//!
//! Media tickets ([`MediaTicket`]) carry one admitted camera access from the API to a video
//! worker in another process.
//!
//! It owns *authentication* and the role -> layer visibility rule. It must never log or
//! return a token or the signing secret, and never decide anything from unsigned input.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use model::Layer;

mod cameras;
mod ticket;
pub use cameras::{CameraUse, Grant};
use serde::{Deserialize, Serialize};
pub use ticket::{MediaTicket, TICKET_LEEWAY_S};

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
            Role::Agency => !matches!(layer, Layer::Reports | Layer::Cameras),
            Role::Operator | Role::Police | Role::Leader | Role::Admin => match layer {
                Layer::Salinity
                | Layer::AirQuality
                | Layer::Units
                | Layer::Alerts
                | Layer::Rivers
                | Layer::Zones
                | Layer::Reports
                | Layer::Cameras => true,
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
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token refused: {0}")]
    Invalid(String),
    #[error("the signing secret must be at least 32 bytes")]
    WeakSecret,
}

/// Signs and verifies tokens with one shared secret.
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::WeakSecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
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
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 30;
        decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
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

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({
            "error": if self.status == StatusCode::UNAUTHORIZED { "unauthorized" } else { "forbidden" },
            "reason": self.reason,
        }));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// The token of a request: the `Authorization: Bearer` header, or for websocket upgrades
/// (browsers cannot set headers there) the `access_token` query parameter.
fn token_of(parts: &Parts) -> Option<String> {
    if let Some(h) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return h.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    let is_upgrade = parts.headers.get(header::UPGRADE).is_some();
    if !is_upgrade {
        return None;
    }
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token="))
        .map(str::to_string)
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Authenticator>::from_ref(state);
        let token =
            token_of(parts).ok_or_else(|| Rejection::unauthorized("a bearer token is required"))?;
        auth.verify(&token)
            .map(Caller)
            .map_err(|e| Rejection::unauthorized(e.to_string()))
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

    #[test]
    fn weak_secrets_are_refused_and_sensors_see_no_layers() {
        assert!(Authenticator::new(b"short").is_err());
        assert!(Layer::ALL.iter().all(|l| !Role::Sensor.can_view(*l)));
        assert!(Role::Sensor.can_ingest() && !Role::Leader.can_ingest());
    }
}
