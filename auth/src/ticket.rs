//! Media tickets: a signed, short-lived permission to use one camera one way, issued by the
//! API after it has checked the caller's access and written the audit row. A video worker in
//! another process (`ioc video`) serves an image only against a ticket for that camera and
//! use; it never sees, and could not use, a person's bearer token.
//!
//! A ticket is not an access token: it has no role, so [`Authenticator::verify`] refuses it,
//! and it carries the `ioc-media` audience, which access tokens lack, so
//! [`Authenticator::verify_ticket`] refuses those.

use jsonwebtoken::{decode, encode, Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{AuthError, Authenticator, CameraUse, Claims};

const AUDIENCE: &str = "ioc-media";
/// Clock skew allowed between the processes that issue and check tickets, seconds.
pub const TICKET_LEEWAY_S: u64 = 5;

/// What a media ticket says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaTicket {
    /// Whose access the API admitted, with the role, agency and grants it was admitted under
    /// (the API checks them again when a browser presents the ticket); its `iat` and `exp`
    /// are the ticket's own.
    #[serde(flatten)]
    pub who: Claims,
    /// The camera's local id.
    pub camera: String,
    #[serde(rename = "use")]
    pub use_: CameraUse,
    pub aud: String,
}

impl MediaTicket {
    /// The caller the ticket stands for, as of its issue.
    pub fn claims(&self) -> Claims {
        self.who.clone()
    }
}

impl Authenticator {
    /// A ticket letting the caller of `claims` use `camera` this way for `ttl`.
    pub fn issue_ticket(
        &self,
        claims: &Claims,
        camera: &str,
        use_: CameraUse,
        ttl: chrono::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let ticket = MediaTicket {
            who: Claims {
                iat: now,
                exp: now + ttl.num_seconds(),
                ..claims.clone()
            },
            camera: camera.to_string(),
            use_,
            aud: AUDIENCE.into(),
        };
        encode(&Header::new(Algorithm::HS256), &ticket, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The ticket, if it is signed with this secret, unexpired, and for `camera` and `use_`.
    pub fn verify_ticket(
        &self,
        token: &str,
        camera: &str,
        use_: CameraUse,
    ) -> Result<MediaTicket, AuthError> {
        self.check_ticket(token, camera, use_, true)
    }

    /// The ticket, if it is signed with this secret and for `camera` and `use_`, however old:
    /// for a caller that keeps a session open past the ticket's expiry on its own terms (an
    /// HLS player polling the URL the ticket opened). The caller must check `exp` itself.
    pub fn verify_ticket_any_age(
        &self,
        token: &str,
        camera: &str,
        use_: CameraUse,
    ) -> Result<MediaTicket, AuthError> {
        self.check_ticket(token, camera, use_, false)
    }

    fn check_ticket(
        &self,
        token: &str,
        camera: &str,
        use_: CameraUse,
        check_exp: bool,
    ) -> Result<MediaTicket, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = TICKET_LEEWAY_S;
        v.validate_exp = check_exp;
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "aud"]);
        let t = decode::<MediaTicket>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(crate::refusal(&e)))?;
        if t.camera != camera || t.use_ != use_ {
            return Err(AuthError::Invalid(format!(
                "the ticket is for another camera or use ({} of {})",
                t.use_.as_str(),
                t.camera
            )));
        }
        Ok(t)
    }
}

/// The tickets used once already (snapshot and MJPEG tickets open one request): a ticket
/// copied from a page, a log or a proxy cannot be replayed in its remaining seconds. Kept
/// until the ticket would have expired anyway; bounded, and fails closed when full.
#[derive(Debug, Default)]
pub struct UsedTickets {
    seen: std::sync::Mutex<std::collections::HashMap<u64, i64>>,
    keys: std::collections::hash_map::RandomState,
}

/// Tickets remembered at once (far beyond what the write limits let callers ask for).
const MAX_USED: usize = 200_000;

impl UsedTickets {
    /// `true` the first time `ticket` (expiring at `exp`) is presented at `now`.
    pub fn first_use(&self, ticket: &str, exp: i64, now: i64) -> bool {
        use std::hash::BuildHasher;
        let key = self.keys.hash_one(ticket);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_USED {
            seen.retain(|_, e| *e + TICKET_LEEWAY_S as i64 >= now);
            if seen.len() >= MAX_USED {
                return false;
            }
        }
        seen.insert(key, exp).is_none()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Authenticator, CameraUse, Claims, Grant, Role};

    fn auth() -> Authenticator {
        Authenticator::new(&[7u8; 32]).unwrap()
    }

    fn op1() -> Claims {
        Claims {
            sub: "op1".into(),
            role: Role::Operator,
            agency: None,
            grants: vec![Grant::SchoolCameras],
            stations: vec![],
            iat: 0,
            exp: 0,
        }
    }

    #[test]
    fn a_ticket_is_used_once() {
        let used = super::UsedTickets::default();
        assert!(used.first_use("a.b.c", 100, 50));
        assert!(!used.first_use("a.b.c", 100, 51), "replayed");
        assert!(used.first_use("a.b.d", 100, 51));
    }

    #[test]
    fn a_ticket_opens_one_camera_one_way_and_nothing_else() {
        let a = auth();
        let hour = chrono::Duration::hours(1);
        let t = a.issue_ticket(&op1(), "hg-cam-an-01", CameraUse::Snapshot, hour);
        let ok = a
            .verify_ticket(&t, "hg-cam-an-01", CameraUse::Snapshot)
            .unwrap();
        assert_eq!(
            (ok.who.sub.as_str(), ok.camera.as_str()),
            ("op1", "hg-cam-an-01")
        );
        assert!(a
            .verify_ticket(&t, "hg-cam-an-02", CameraUse::Snapshot)
            .is_err());
        assert!(a
            .verify_ticket(&t, "hg-cam-an-01", CameraUse::LiveView)
            .is_err());
        // A ticket is no access token, and an access token (even an admin's) is no ticket.
        assert!(a.verify(&t).is_err());
        let admin = a.issue("root", Role::Admin, None, hour);
        assert!(a
            .verify_ticket(&admin, "hg-cam-an-01", CameraUse::Snapshot)
            .is_err());
        // Another secret, or an expired ticket.
        let other = Authenticator::new(&[8u8; 32]).unwrap();
        let foreign = other.issue_ticket(&op1(), "hg-cam-an-01", CameraUse::Snapshot, hour);
        assert!(a
            .verify_ticket(&foreign, "hg-cam-an-01", CameraUse::Snapshot)
            .is_err());
        let old = a.issue_ticket(&op1(), "hg-cam-an-01", CameraUse::Snapshot, -hour);
        assert!(a
            .verify_ticket(&old, "hg-cam-an-01", CameraUse::Snapshot)
            .is_err());
        // Any age: the old one passes, with its expiry for the caller to judge; the foreign
        // one and the wrong camera still do not.
        let t = a
            .verify_ticket_any_age(&old, "hg-cam-an-01", CameraUse::Snapshot)
            .unwrap();
        assert!(t.who.exp < chrono::Utc::now().timestamp());
        assert!(a
            .verify_ticket_any_age(&foreign, "hg-cam-an-01", CameraUse::Snapshot)
            .is_err());
        assert!(a
            .verify_ticket_any_age(&old, "hg-cam-an-02", CameraUse::Snapshot)
            .is_err());
    }
}
