//! Websocket tickets: a page asks `POST /ws/tickets` with its bearer token and opens
//! `/ws?ticket=…`, so that no access token is ever in a URL (where proxies, browser history
//! and server logs keep it). A ticket is signed, lasts [`WS_TICKET_TTL_S`], opens one
//! connection ([`crate::UsedTickets`]), and carries the caller's claims with the access
//! token's own expiry, so the connection still ends (4001) when the token would have.
//!
//! It has the `ioc-ws` audience and no `role` at the top level, so neither
//! [`Authenticator::verify`] nor a media ticket check takes it, and it takes neither.

use jsonwebtoken::{decode, encode, Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{AuthError, Authenticator, Claims};

const AUDIENCE: &str = "ioc-ws";
/// How long a websocket ticket may wait for its connection, seconds.
pub const WS_TICKET_TTL_S: i64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WsTicket {
    /// The caller, with the access token's `exp` (the connection's end).
    who: Claims,
    iat: i64,
    exp: i64,
    aud: String,
}

impl Authenticator {
    /// A ticket opening one websocket as the caller of `claims`; (ticket, its expiry).
    pub fn issue_ws_ticket(&self, claims: &Claims) -> (String, i64) {
        let now = chrono::Utc::now().timestamp();
        let exp = (now + WS_TICKET_TTL_S).min(claims.exp);
        let t = WsTicket {
            who: claims.clone(),
            iat: now,
            exp,
            aud: AUDIENCE.into(),
        };
        let signed = encode(&Header::new(Algorithm::HS256), &t, &self.encoding)
            .expect("HS256 signing cannot fail");
        (signed, exp)
    }

    /// The claims of a websocket ticket signed with this secret and unexpired; its expiry,
    /// to remember it as used until then.
    pub fn verify_ws_ticket(&self, ticket: &str) -> Result<(Claims, i64), AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = crate::TICKET_LEEWAY_S;
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "aud"]);
        let t = decode::<WsTicket>(ticket, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(crate::refusal(&e)))?;
        if t.who.exp < chrono::Utc::now().timestamp() {
            return Err(AuthError::Invalid(
                "the access token behind the ticket expired".into(),
            ));
        }
        Ok((t.who, t.exp))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Authenticator, Role};

    #[test]
    fn a_ws_ticket_is_neither_a_token_nor_a_media_ticket() {
        let a = Authenticator::new(&[7u8; 32]).unwrap();
        let token = a.issue("op1", Role::Operator, None, chrono::Duration::hours(1));
        let claims = a.verify(&token).unwrap();
        let (ticket, exp) = a.issue_ws_ticket(&claims);
        let (who, _) = a.verify_ws_ticket(&ticket).unwrap();
        assert_eq!(who.sub, "op1");
        assert_eq!(who.exp, claims.exp, "the connection ends with the token");
        assert!(exp <= chrono::Utc::now().timestamp() + super::WS_TICKET_TTL_S);
        assert!(a.verify(&ticket).is_err(), "not an access token");
        assert!(
            a.verify_ws_ticket(&token).is_err(),
            "a token is not a ticket"
        );
        let media = a.issue_ticket(
            &claims,
            "cam-1",
            crate::CameraUse::Snapshot,
            chrono::Duration::seconds(30),
        );
        assert!(a.verify_ws_ticket(&media).is_err(), "nor is a media ticket");
        let other = Authenticator::new(&[8u8; 32]).unwrap();
        assert!(
            other.verify_ws_ticket(&ticket).is_err(),
            "signed with another secret"
        );
    }
}
