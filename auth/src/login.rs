//! The pages' login. A person signs in at the province's provider (authorization code with
//! PKCE, `/auth/login` → provider → `/auth/callback`) or, in the demo, with one click per role
//! (`/auth/demo`); either way the page gets an HTTP-only, SameSite=Strict cookie holding the
//! access token (Secure wherever the address is https or loopback), so no token is ever in a
//! URL or within reach of the page's scripts. Any api process checks the cookie like a bearer
//! token: nothing is kept server-side, so several api processes need no shared sessions.
//!
//! `/auth/session` says who is signed in and until when; `/auth/refresh` renews the session
//! before it ends (the provider's refresh token, in a cookie only `/auth` receives);
//! `/auth/logout` forgets it here, revokes the refresh token and names the provider's logout
//! address. A write sent with the cookie must carry the [`CSRF_HEADER`] (a cross-site form
//! cannot), and a websocket opened with it must come from this site's own origin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::oidc::OidcVerifier;
use crate::{Authenticator, Claims, Grant, Role};

/// The session cookie: the access token itself.
pub const SESSION_COOKIE: &str = "ioc_session";
/// The provider's refresh token, sent only to `/auth`.
const REFRESH_COOKIE: &str = "ioc_refresh";
/// The provider's ID token, the hint its logout asks for; sent only to `/auth`.
const ID_COOKIE: &str = "ioc_id";
/// A login under way: state, PKCE verifier and where to go back to; sent only to `/auth`.
const LOGIN_COOKIE: &str = "ioc_login";
/// The header a page's write sent with the session cookie must carry.
pub const CSRF_HEADER: &str = "x-ioc-csrf";
/// How long a login may take at the provider, seconds.
const LOGIN_TTL_S: i64 = 600;
/// Longest access token a session cookie can hold (browsers keep cookies up to 4 KiB).
const MAX_COOKIE_TOKEN: usize = 3800;
/// Largest token answer read from the provider.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// `[auth.oidc.login]`: this service as a client of the provider, for the pages.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The client registered at the provider; its redirect address is
    /// `{public_url}/auth/callback`, its logout return `{public_url}/`.
    pub client_id: String,
    /// The client's secret (a confidential client); prefer `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Longest a session lasts by renewals before the person signs in again, seconds.
    #[serde(default = "default_session_max")]
    pub session_max_s: u64,
}

fn default_scope() -> String {
    "openid api".into()
}
fn default_session_max() -> u64 {
    12 * 3600
}

impl std::fmt::Debug for LoginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_secret_file", &self.client_secret_file)
            .field("scope", &self.scope)
            .field("session_max_s", &self.session_max_s)
            .finish()
    }
}

impl LoginConfig {
    /// The client secret, from the file when one is named.
    pub fn secret(&self) -> Result<Option<String>, String> {
        match (&self.client_secret_file, &self.client_secret) {
            (Some(f), _) => std::fs::read_to_string(f)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| format!("auth.oidc.login.client_secret_file {}: {e}", f.display())),
            (None, s) => Ok(s.clone()),
        }
    }
}

/// A one-click login of the demo.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    /// What the button says.
    pub label: String,
    pub sub: String,
    pub role: Role,
    pub agency: Option<String>,
    pub grants: Vec<Grant>,
    /// The page this role opens first.
    pub home: String,
}

struct ProviderLogin {
    verifier: Arc<OidcVerifier>,
    cfg: LoginConfig,
    secret: Option<String>,
}

/// The login routes' state.
pub struct Login {
    auth: Arc<Authenticator>,
    provider: Option<ProviderLogin>,
    demo: Vec<DemoAccount>,
    demo_ttl_s: i64,
    public_url: String,
    secure: bool,
}

impl Login {
    /// The login of a service reached at `public_url`: at the provider when the authenticator
    /// has one with `[auth.oidc.login]`.
    pub fn new(auth: Arc<Authenticator>, public_url: &str) -> Result<Self, String> {
        let public_url = public_url.trim_end_matches('/').to_string();
        let url = url::Url::parse(&public_url).map_err(|e| format!("public_url: {e}"))?;
        let secure = url.scheme() == "https" || crate::oidc::is_loopback(&url);
        if !secure {
            warn!("public_url is plain http on a non-loopback address: the session cookie cannot be Secure; serve the pages behind TLS");
        }
        let provider = match auth.oidc() {
            Some(v) => match v.config().login.clone() {
                Some(cfg) => Some(ProviderLogin {
                    verifier: v.clone(),
                    secret: cfg.secret()?,
                    cfg,
                }),
                None => None,
            },
            None => None,
        };
        Ok(Self {
            auth,
            provider,
            demo: Vec::new(),
            demo_ttl_s: 12 * 3600,
            public_url,
            secure,
        })
    }

    /// Offers `accounts` as one-click logins (the demo only), sessions lasting `ttl_s`.
    pub fn with_demo(mut self, accounts: Vec<DemoAccount>, ttl_s: i64) -> Self {
        self.demo = accounts;
        self.demo_ttl_s = ttl_s.max(60);
        self
    }

    fn cookie(
        &self,
        name: &str,
        value: &str,
        path: &str,
        max_age: i64,
        strict: bool,
    ) -> HeaderValue {
        let v = set_cookie(name, value, path, max_age, strict, self.secure);
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn clear(&self, name: &str, path: &str) -> HeaderValue {
        self.cookie(name, "", path, 0, true)
    }

    fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.public_url)
    }

    /// Whether a form or websocket came from this site (its `Origin`, when sent, is ours or
    /// the request's own host).
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        same_origin(headers, &self.public_url)
    }
}

/// The routes under `/auth`.
pub fn router(login: Arc<Login>) -> Router {
    Router::new()
        .route("/auth/session", get(session))
        .route("/auth/login", get(start))
        .route("/auth/callback", get(callback))
        .route("/auth/demo", get(demo_page).post(demo_login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/login.css", get(login_css))
        .with_state(login)
}

/// The session cookie of a request, if any.
pub fn session_of(headers: &HeaderMap) -> Option<&str> {
    cookie_of(headers, SESSION_COOKIE)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HTTP-only always; SameSite Strict (the session) or Lax (a login
/// under way, which comes back from the provider's site); Secure when the site is.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    strict: bool,
    secure: bool,
) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite={}{}",
        max_age.max(0),
        if strict { "Strict" } else { "Lax" },
        if secure { "; Secure" } else { "" }
    )
}

/// Whether `headers` come from this site: its fetch metadata says so, or its `Origin` is
/// `public_url`'s or the request's own host (a browser sends `Origin` on every websocket and
/// every cross-origin POST).
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    // Under `Referrer-Policy: no-referrer` a browser's form sends `Origin: null`; its fetch
    // metadata still says where the request came from.
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin.trim_end_matches('/') == public_url.trim_end_matches('/') {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

/// Where to go after a login: a path of this site only (never `//elsewhere` or a URL).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 512
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The S256 challenge of a PKCE verifier (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A login under way, as its cookie holds it.
#[derive(Debug, PartialEq)]
struct Pending {
    state: String,
    verifier: String,
    next: String,
}

impl Pending {
    fn encode(&self) -> String {
        format!(
            "{}.{}.{}",
            self.state,
            self.verifier,
            URL_SAFE_NO_PAD.encode(&self.next)
        )
    }

    fn decode(v: &str) -> Option<Self> {
        let mut it = v.splitn(3, '.');
        let (state, verifier, next) = (it.next()?, it.next()?, it.next()?);
        let next = String::from_utf8(URL_SAFE_NO_PAD.decode(next).ok()?).ok()?;
        Some(Self {
            state: state.into(),
            verifier: verifier.into(),
            next: safe_next(Some(&next)),
        })
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Who is signed in on this page, or how one signs in.
async fn session(State(l): State<Arc<Login>>, headers: HeaderMap) -> Response {
    let mut ways = Vec::new();
    if l.provider.is_some() {
        ways.push("provider");
    }
    if !l.demo.is_empty() {
        ways.push("demo");
    }
    let signed_in = match session_of(&headers) {
        Some(t) => l.auth.verify_async(t).await.ok(),
        None => None,
    };
    let body = match signed_in {
        Some(c) => json!({
            "signed_in": true, "sub": c.sub, "role": c.role, "agency": c.agency, "exp": c.exp,
            "renewable": cookie_of(&headers, REFRESH_COOKIE).is_some() || is_own(&l, &headers),
            "login": ways,
        }),
        // Back after the access token ran out (a wall screen restarted, a tablet woken): the
        // refresh token may still renew the session without a new login.
        None => json!({"signed_in": false, "login": ways,
                       "renewable": l.provider.is_some() && cookie_of(&headers, REFRESH_COOKIE).is_some()}),
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn is_own(l: &Login, headers: &HeaderMap) -> bool {
    session_of(headers)
        .and_then(|t| jsonwebtoken::decode_header(t).ok())
        .is_some_and(|h| h.alg == jsonwebtoken::Algorithm::HS256)
        && !l.demo.is_empty()
}

/// Sends the browser to the provider (or the demo's buttons).
async fn start(State(l): State<Arc<Login>>, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    let Some(p) = &l.provider else {
        if !l.demo.is_empty() {
            return Redirect::to(&format!("/auth/demo?next={}", urlencode(&next))).into_response();
        }
        return page(
            StatusCode::NOT_FOUND,
            "Chưa cấu hình đăng nhập một lần",
            "This service has no sign-in configured (auth.oidc.login): use a bearer token.",
        );
    };
    let endpoints = match p.verifier.endpoints() {
        Some(e) => e,
        None => {
            p.verifier.refresh_soon().await;
            match p.verifier.endpoints() {
                Some(e) => e,
                None => {
                    return page(
                        StatusCode::BAD_GATEWAY,
                        "Không liên lạc được máy chủ đăng nhập",
                        "The identity provider could not be reached; try again shortly.",
                    )
                }
            }
        }
    };
    let pending = Pending {
        state: random_b64(24),
        verifier: random_b64(48),
        next,
    };
    let mut url = match url::Url::parse(&endpoints.authorization) {
        Ok(u) => u,
        Err(_) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Máy chủ đăng nhập trả lời sai",
                "The identity provider names no usable authorization endpoint.",
            )
        }
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.cfg.client_id)
        .append_pair("redirect_uri", &l.redirect_uri())
        .append_pair("scope", &p.cfg.scope)
        .append_pair("state", &pending.state)
        .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &p.verifier.config().audience);
    let mut r = Redirect::to(url.as_str()).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        l.cookie(LOGIN_COOKIE, &pending.encode(), "/auth", LOGIN_TTL_S, false),
    );
    r
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// What the provider's token endpoint answers.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// Calls the provider's token endpoint with `form` (plus the client's credentials).
async fn token_call(
    p: &ProviderLogin,
    form: &mut Vec<(&str, String)>,
) -> Result<TokenAnswer, String> {
    let endpoints = p
        .verifier
        .endpoints()
        .ok_or("the identity provider's endpoints are not known yet")?;
    form.push(("client_id", p.cfg.client_id.clone()));
    if let Some(s) = &p.secret {
        form.push(("client_secret", s.clone()));
    }
    form.push(("resource", p.verifier.config().audience.clone()));
    let resp = p
        .verifier
        .http()
        .post(&endpoints.token)
        .form(form)
        .send()
        .await
        .map_err(|e| {
            format!(
                "the identity provider could not be reached: {}",
                e.without_url()
            )
        })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if body.len() > MAX_TOKEN_ANSWER {
        return Err("the identity provider's answer is too large".into());
    }
    if !status.is_success() {
        // The provider's own error code says why (invalid_grant, …); never its body whole.
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| status.to_string());
        return Err(format!("the identity provider refused: {code}"));
    }
    serde_json::from_slice(&body)
        .map_err(|_| "the identity provider's answer is not a token".into())
}

/// Back from the provider: the code is exchanged and the session cookie set.
async fn callback(
    State(l): State<Arc<Login>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(p) = &l.provider else {
        return page(
            StatusCode::NOT_FOUND,
            "Chưa cấu hình đăng nhập",
            "No sign-in is configured.",
        );
    };
    if let Some(e) = q.error {
        let why = q.error_description.unwrap_or_default();
        return page(
            StatusCode::UNAUTHORIZED,
            "Đăng nhập không thành công",
            &format!("The identity provider answered {e}. {why}"),
        );
    }
    let pending = cookie_of(&headers, LOGIN_COOKIE).and_then(Pending::decode);
    let (Some(pending), Some(code)) = (pending, q.code) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Phiên đăng nhập đã hết hạn",
            "This sign-in was not started here or took too long; start again.",
        );
    };
    if q.state.as_deref() != Some(pending.state.as_str()) {
        return page(
            StatusCode::BAD_REQUEST,
            "Phiên đăng nhập không khớp",
            "The answer is not for the sign-in started in this browser (state); start again.",
        );
    }
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code),
        ("redirect_uri", l.redirect_uri()),
        ("code_verifier", pending.verifier.clone()),
    ];
    let answer = match token_call(p, &mut form).await {
        Ok(a) => a,
        Err(e) => return page(StatusCode::BAD_GATEWAY, "Đăng nhập không thành công", &e),
    };
    let claims = match l.auth.verify_async(&answer.access_token).await {
        Ok(c) => c,
        Err(e) => {
            return page(
                StatusCode::FORBIDDEN,
                "Tài khoản chưa có quyền trên hệ thống IOC",
                &e.to_string(),
            )
        }
    };
    // Browsers drop a cookie past 4 KiB without a word: say so instead of looping on login.
    if answer.access_token.len() > MAX_COOKIE_TOKEN {
        return page(
            StatusCode::BAD_GATEWAY,
            "Mã truy cập quá lớn",
            &format!(
                "The provider's access token is {} bytes; a session cookie holds at most {MAX_COOKIE_TOKEN}. Ask its administrators to put fewer claims in tokens for this client.",
                answer.access_token.len()
            ),
        );
    }
    info!(sub = %claims.sub, role = %claims.role, "signed in at the provider");
    let mut r = Redirect::to(&pending.next).into_response();
    set_session(&l, &mut r, &claims, &answer, Some(p.cfg.session_max_s));
    r.headers_mut()
        .append(header::SET_COOKIE, l.clear(LOGIN_COOKIE, "/auth"));
    r
}

fn set_session(l: &Login, r: &mut Response, claims: &Claims, a: &TokenAnswer, max_s: Option<u64>) {
    let now = chrono::Utc::now().timestamp();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        l.cookie(SESSION_COOKIE, &a.access_token, "/", claims.exp - now, true),
    );
    if let (Some(t), Some(max)) = (&a.refresh_token, max_s) {
        h.append(
            header::SET_COOKIE,
            l.cookie(REFRESH_COOKIE, t, "/auth", max as i64, true),
        );
    }
    if let (Some(t), Some(max)) = (&a.id_token, max_s) {
        h.append(
            header::SET_COOKIE,
            l.cookie(ID_COOKIE, t, "/auth", max as i64, true),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The demo's one-click logins.
async fn demo_page(State(l): State<Arc<Login>>, Query(q): Query<NextQuery>) -> Response {
    if l.demo.is_empty() {
        return page(
            StatusCode::NOT_FOUND,
            "Không có",
            "One-click logins exist only in the demo.",
        );
    }
    let next = q.next.as_deref().map(|n| safe_next(Some(n)));
    let mut buttons = String::new();
    for (i, a) in l.demo.iter().enumerate() {
        buttons.push_str(&format!(
            "<button name=\"account\" value=\"{i}\"><b>{}</b><span>{}</span></button>\n",
            escape(&a.label),
            escape(a.role.as_str())
        ));
    }
    let next_field = next
        .map(|n| {
            format!(
                "<input type=\"hidden\" name=\"next\" value=\"{}\">",
                escape(&n)
            )
        })
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Đăng nhập — IOC (bản trình diễn)</title>\
         <link rel=\"stylesheet\" href=\"/auth/login.css\"></head><body>\
         <main><h1>Trung tâm điều hành thông minh</h1>\
         <p>Bản trình diễn: chọn một vai trò để đăng nhập.</p>\
         <form method=\"post\" action=\"/auth/demo\">{next_field}\n{buttons}</form></main></body></html>"
    ))
    .into_response()
}

#[derive(Deserialize)]
struct DemoForm {
    account: usize,
    next: Option<String>,
}

async fn demo_login(
    State(l): State<Arc<Login>>,
    headers: HeaderMap,
    Form(f): Form<DemoForm>,
) -> Response {
    if !l.same_origin(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Không hợp lệ",
            "A sign-in must come from this site's own page.",
        );
    }
    let Some(a) = l.demo.get(f.account) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Không có tài khoản này",
            "No such demo account.",
        );
    };
    let token = l.auth.issue_granted(
        &a.sub,
        a.role,
        a.agency.as_deref(),
        &a.grants,
        chrono::Duration::seconds(l.demo_ttl_s),
    );
    let claims = match l.auth.verify(&token) {
        Ok(c) => c,
        Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, "Lỗi", &e.to_string()),
    };
    let next = f
        .next
        .as_deref()
        .map(|n| safe_next(Some(n)))
        .unwrap_or_else(|| a.home.clone());
    let mut r = Redirect::to(&next).into_response();
    let answer = TokenAnswer {
        access_token: token,
        refresh_token: None,
        id_token: None,
    };
    set_session(&l, &mut r, &claims, &answer, None);
    r
}

fn refused(status: StatusCode, reason: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": "unauthorized", "reason": reason})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Renews the session before it ends: the provider's refresh grant, or for this service's own
/// (demo) session, the same claims signed again.
async fn refresh(State(l): State<Arc<Login>>, headers: HeaderMap) -> Response {
    if headers.get(CSRF_HEADER).is_none() {
        return refused(
            StatusCode::FORBIDDEN,
            "a page's request must carry the x-ioc-csrf header",
        );
    }
    if let (Some(p), Some(rt)) = (&l.provider, cookie_of(&headers, REFRESH_COOKIE)) {
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", rt.to_string()),
        ];
        let answer = match token_call(p, &mut form).await {
            Ok(a) => a,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, &format!("{e}; sign in again")),
        };
        let claims = match l.auth.verify_async(&answer.access_token).await {
            Ok(c) => c,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, &e.to_string()),
        };
        let mut r = Json(json!({"exp": claims.exp})).into_response();
        // A refresh token that was rotated comes back new; one that was not stays.
        set_session(&l, &mut r, &claims, &answer, Some(p.cfg.session_max_s));
        return r;
    }
    let own = session_of(&headers)
        .filter(|_| !l.demo.is_empty())
        .filter(|t| {
            jsonwebtoken::decode_header(t).is_ok_and(|h| h.alg == jsonwebtoken::Algorithm::HS256)
        })
        .and_then(|t| l.auth.verify(t).ok());
    let Some(mut claims) = own else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "no session to renew; sign in again",
        );
    };
    let now = chrono::Utc::now().timestamp();
    claims.iat = now;
    claims.exp = now + l.demo_ttl_s;
    let answer = TokenAnswer {
        access_token: l.auth.sign(&claims),
        refresh_token: None,
        id_token: None,
    };
    let mut r = Json(json!({"exp": claims.exp})).into_response();
    set_session(&l, &mut r, &claims, &answer, None);
    r
}

/// Signs out here (the cookies are cleared, the refresh token revoked) and names the
/// provider's logout address for the page to go to.
async fn logout(State(l): State<Arc<Login>>, headers: HeaderMap) -> Response {
    if headers.get(CSRF_HEADER).is_none() {
        return refused(
            StatusCode::FORBIDDEN,
            "a page's request must carry the x-ioc-csrf header",
        );
    }
    let mut end_session = None;
    if let Some(p) = &l.provider {
        let endpoints = p.verifier.endpoints();
        if let (Some(rt), Some(rev)) = (
            cookie_of(&headers, REFRESH_COOKIE),
            endpoints.as_ref().and_then(|e| e.revocation.clone()),
        ) {
            let mut form = vec![
                ("token", rt.to_string()),
                ("token_type_hint", "refresh_token".to_string()),
                ("client_id", p.cfg.client_id.clone()),
            ];
            if let Some(s) = &p.secret {
                form.push(("client_secret", s.clone()));
            }
            let call = p
                .verifier
                .http()
                .post(rev)
                .form(&form)
                .timeout(Duration::from_secs(3));
            if let Err(e) = call.send().await {
                warn!(error = %e.without_url(), "the refresh token could not be revoked at the provider");
            }
        }
        let signed_in_there = cookie_of(&headers, ID_COOKIE).is_some()
            || cookie_of(&headers, REFRESH_COOKIE).is_some();
        if let Some(es) = endpoints
            .and_then(|e| e.end_session)
            .filter(|_| signed_in_there)
        {
            if let Ok(mut u) = url::Url::parse(&es) {
                {
                    let mut q = u.query_pairs_mut();
                    q.append_pair("client_id", &p.cfg.client_id);
                    q.append_pair("post_logout_redirect_uri", &format!("{}/", l.public_url));
                    if let Some(id) = cookie_of(&headers, ID_COOKIE) {
                        q.append_pair("id_token_hint", id);
                    }
                }
                end_session = Some(u.to_string());
            }
        }
    }
    let mut r = Json(json!({"signed_out": true, "end_session": end_session})).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, l.clear(SESSION_COOKIE, "/"));
    h.append(header::SET_COOKIE, l.clear(REFRESH_COOKIE, "/auth"));
    h.append(header::SET_COOKIE, l.clear(ID_COOKIE, "/auth"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const LOGIN_CSS: &str = "body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;\
background:#0b1220;color:#e6edf7;font:16px/1.4 system-ui,sans-serif}main{max-width:32rem;padding:2rem}\
h1{font-size:1.4rem}form{display:grid;gap:.6rem}button{display:flex;justify-content:space-between;\
padding:.8rem 1rem;border:1px solid #2b3b55;border-radius:.4rem;background:#15213a;color:inherit;font:inherit;cursor:pointer}\
button:hover,button:focus{background:#1f3156}button span{opacity:.6}a{color:#7fb3ff}";

async fn login_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        LOGIN_CSS,
    )
        .into_response()
}

/// A small page saying what went wrong, in Vietnamese and English, with a way back.
fn page(status: StatusCode, title: &str, detail: &str) -> Response {
    let mut r = (
        status,
        Html(format!(
            "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>{t}</title>\
             <link rel=\"stylesheet\" href=\"/auth/login.css\"></head><body><main><h1>{t}</h1>\
             <p>{d}</p><p><a href=\"/\">Về trang chính</a></p></main></body></html>",
            t = escape(title),
            d = escape(detail)
        )),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "javascript:x",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            safe_next(Some("/wall/tuong-chinh?screen=1")),
            "/wall/tuong-chinh?screen=1"
        );
    }

    #[test]
    fn pkce_challenge_is_rfc7636s_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_pending_login_round_trips_and_a_bad_one_is_none() {
        let p = Pending {
            state: random_b64(24),
            verifier: random_b64(48),
            next: "/leader?unit=hg".into(),
        };
        assert_eq!(Pending::decode(&p.encode()), Some(p));
        assert_eq!(Pending::decode("only.two"), None);
        // A next smuggled into the cookie is still only a local path.
        let evil = format!("s.v.{}", URL_SAFE_NO_PAD.encode("//evil.example"));
        assert_eq!(Pending::decode(&evil).unwrap().next, "/");
    }

    #[test]
    fn cookies_are_http_only_and_read_back() {
        let c = set_cookie(SESSION_COOKIE, "abc", "/", 60, true, true);
        assert_eq!(
            c,
            "ioc_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie(LOGIN_COOKIE, "x", "/auth", 600, false, false).contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ioc_session=tok; b=2"),
        );
        assert_eq!(session_of(&h), Some("tok"));
        assert_eq!(cookie_of(&h, "b"), Some("2"));
        assert_eq!(cookie_of(&h, "ioc"), None);
    }

    #[test]
    fn origins_are_ours_or_not() {
        let mut h = HeaderMap::new();
        assert!(!same_origin(&h, "https://ioc.haugiang.gov.vn"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ioc.haugiang.gov.vn"),
        );
        assert!(same_origin(&h, "https://ioc.haugiang.gov.vn/"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, "https://ioc.haugiang.gov.vn"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, "https://ioc.haugiang.gov.vn"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, "https://ioc.haugiang.gov.vn"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, "https://ioc.haugiang.gov.vn"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, "https://ioc.haugiang.gov.vn"));
    }
}
