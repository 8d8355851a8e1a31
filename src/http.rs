//! The one HTTP listener of a process (API, ingest, pages, websocket and the video workers'
//! media endpoint share it), served with the limits a public-facing service needs: a cap on
//! connections in all and per client address, a deadline for a request's headers (which is
//! also how long an idle keep-alive connection is kept), a deadline for answering a request
//! (streams such as MJPEG and websockets run past it once answered), security headers on
//! every answer, and a panic in a handler answered 500 instead of a dropped connection.
//!
//! axum's own `serve` has none of these (no header timer, no cap), which let 1,200 half-sent
//! requests stay open and 1,100 idle sockets exhaust the open-files limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth::limits::{Limited, SharedLimiter, WriteKind};
use auth::Authenticator;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tracing::{debug, error, warn};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// A request's headers must arrive within this (s); a keep-alive connection idle this
    /// long between requests is closed too.
    pub header_read_timeout_s: u64,
    /// A request must be answered within this (s), its body read included; a stream already
    /// answered (MJPEG, HLS, websocket, replay) is not cut.
    pub request_timeout_s: u64,
    /// Open connections in all; past it, new ones are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_client: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_s: 10,
            request_timeout_s: 30,
            max_connections: 8192,
            max_connections_per_client: 256,
        }
    }
}

/// Open connections per client address, and in all.
#[derive(Default)]
struct Conns {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; it leaves the count when dropped.
struct Admitted {
    conns: Arc<Mutex<Conns>>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&self.ip);
            }
        }
    }
}

fn admit(conns: &Arc<Mutex<Conns>>, cfg: &HttpConfig, ip: IpAddr) -> Option<Admitted> {
    let mut c = conns.lock().unwrap_or_else(|e| e.into_inner());
    let mine = c.per_client.get(&ip).copied().unwrap_or(0);
    if c.total >= cfg.max_connections || mine >= cfg.max_connections_per_client {
        return None;
    }
    c.total += 1;
    *c.per_client.entry(ip).or_default() += 1;
    Some(Admitted {
        conns: conns.clone(),
        ip,
    })
}

/// Raises this process's open-files limit to its hard limit (systemd units set
/// `LimitNOFILE=`): the default soft limit of 1024 is a few hundred idle clients.
pub fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                debug!(before, after = lim.rlim_max, "open-files limit raised");
            }
        }
    }
}

/// The Content-Security-Policy of every answer: the site's own scripts and styles only,
/// images from the site (and `basemap`'s tile server, when it has one), nothing inline.
pub fn content_security_policy(basemap: Option<&str>) -> HeaderValue {
    let img = match basemap {
        Some(origin) => format!("'self' data: blob: {origin}"),
        None => "'self' data: blob:".to_string(),
    };
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src {img}; \
         media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

/// The headers every answer carries: no sniffing of content types (a JPEG/HTML polyglot
/// stays an image), no framing by other sites, no referrer leaving the site, and the policy
/// `csp`. Pages set nothing inline.
pub async fn security_headers(
    axum::extract::State(csp): axum::extract::State<HeaderValue>,
    mut resp: Response,
) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        if !h.contains_key(&k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
}

/// A handler that panicked: 500 in the API's error shape; the panic is logged by the hook.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    metrics::counter!("ioc_http_panics_total").increment(1);
    error!("a request handler panicked; answered 500");
    api_error::ApiError::internal().into_response()
}

/// Who may write how often: what the rate-limit middleware needs.
#[derive(Clone)]
pub struct WriteLimits {
    pub limiter: Arc<SharedLimiter>,
    pub auth: Arc<Authenticator>,
}

/// The kind of write a request is, if it is one.
fn write_kind(method: &Method, path: &str) -> Option<WriteKind> {
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) {
        return None;
    }
    Some(if path.starts_with("/open311/v2/requests.") {
        WriteKind::Report
    } else if path == "/ingest/v1/readings" {
        WriteKind::Readings
    } else {
        WriteKind::Other
    })
}

/// 429 with `Retry-After`, in the shape of the resource (Open311's error list for
/// Open311 paths).
pub fn too_many(path: &str, l: Limited) -> Response {
    let secs = l.retry_after.as_secs().max(1);
    let whose = if l.per_subject {
        "this account"
    } else {
        "this address"
    };
    let reason = format!("too many writes from {whose}; retry after {secs} s");
    let mut resp = if path.starts_with("/open311/") {
        (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!([{"code": 429, "description": reason}])),
        )
            .into_response()
    } else {
        api_error::ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", reason)
            .with("retry_after_s", secs)
            .into_response()
    };
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Charges every write to its client address and, when it carries a valid bearer token, to
/// its subject (`role:sub`); past a limit it is answered 429 before any handler runs.
async fn limit_writes(
    axum::extract::State(w): axum::extract::State<WriteLimits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(kind) = write_kind(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let address = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let subject = match auth::token_of(req.headers()) {
        Some(t) => w.auth.verify_async(t).await.ok().map(|c| c.principal()),
        None => None,
    };
    match w.limiter.check(kind, &address, subject.as_deref()) {
        Ok(()) => next.run(req).await,
        Err(l) => {
            metrics::counter!("ioc_http_rate_limited_total").increment(1);
            too_many(req.uri().path(), l)
        }
    }
}

/// The app with the per-request limits: answer deadline, panic catching, security headers,
/// write rates.
pub fn harden(
    app: Router,
    cfg: &HttpConfig,
    limits: WriteLimits,
    audit: audit::AuditLayer,
    csp: HeaderValue,
) -> Router {
    // Outermost last: every answer (a 408, a caught panic's 500, a 429) gets the headers,
    // and every write (a 429 too) leaves its audit entry.
    app.layer(axum::middleware::from_fn_with_state(limits, limit_writes))
        .layer(axum::middleware::from_fn_with_state(audit, audit::layer))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_s.max(1)),
        ))
        .layer(axum::middleware::map_response_with_state(
            csp,
            security_headers,
        ))
}

/// Serves `app` on `listener` until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    cfg: HttpConfig,
    limits: WriteLimits,
    audit: audit::AuditLayer,
    csp: HeaderValue,
) -> std::io::Result<()> {
    raise_open_files_limit();
    let app = harden(app, &cfg, limits, audit, csp);
    let conns = Arc::new(Mutex::new(Conns::default()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_s.max(1)))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Duration::from_secs(cfg.header_read_timeout_s.max(1)));
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors or the like: wait instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = admit(&conns, &cfg, peer.ip()) else {
            metrics::counter!("ioc_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(move |mut req: axum::http::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let builder = builder.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_lets_images_come_from_the_basemap_server_only() {
        let plain = content_security_policy(None);
        assert!(plain
            .to_str()
            .unwrap()
            .contains("img-src 'self' data: blob:;"));
        let xyz = content_security_policy(Some("https://*.tiles.haugiang.gov.vn"));
        let xyz = xyz.to_str().unwrap();
        assert!(
            xyz.contains("img-src 'self' data: blob: https://*.tiles.haugiang.gov.vn;"),
            "{xyz}"
        );
        assert!(
            xyz.contains("script-src 'self';") && xyz.contains("connect-src 'self';"),
            "{xyz}"
        );
    }

    fn limits() -> WriteLimits {
        WriteLimits {
            limiter: Arc::new(SharedLimiter::new(&Default::default())),
            auth: Arc::new(Authenticator::new(&[7u8; 32]).unwrap()),
        }
    }

    fn audit_layer(store: Arc<store::MemoryHistory>) -> audit::AuditLayer {
        audit::AuditLayer {
            auditor: Arc::new(audit::Auditor::new(Some(store), &Default::default()).unwrap()),
            auth: limits().auth,
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_with_the_security_headers() {
        async fn boom() -> &'static str {
            panic!("a handler bug")
        }
        let app = harden(
            Router::new().route("/boom", axum::routing::get(boom)),
            &HttpConfig::default(),
            limits(),
            audit_layer(Arc::new(store::MemoryHistory::new(10))),
            content_security_policy(None),
        );
        let req = axum::http::Request::get("/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("a handler bug"),
            "internals leaked"
        );
    }

    #[tokio::test]
    async fn writes_past_the_rate_are_answered_429_with_retry_after_and_each_leaves_its_entry() {
        let cfg = auth::limits::LimitsConfig {
            write_per_address: auth::limits::Rate::new(2, 1.0),
            ..Default::default()
        };
        let w = WriteLimits {
            limiter: Arc::new(SharedLimiter::new(&cfg)),
            ..limits()
        };
        let store = Arc::new(store::MemoryHistory::new(10));
        let app = harden(
            Router::new().route("/api/v1/zones", axum::routing::post(|| async { "ok" })),
            &HttpConfig::default(),
            w,
            audit_layer(store.clone()),
            content_security_policy(None),
        );
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let mut req = axum::http::Request::post("/api/v1/zones")
                .body(axum::body::Body::empty())
                .unwrap();
            req.extensions_mut().insert(ConnectInfo(
                "10.0.0.9:5000".parse::<std::net::SocketAddr>().unwrap(),
            ));
            let resp = app.clone().oneshot(req).await.unwrap();
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(resp.headers().contains_key(header::RETRY_AFTER));
            }
            statuses.push(resp.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 429]);
        // The refusal is an entry; so are the two that took effect, though late (this
        // handler writes no entry of its own, which the entries say).
        use store::History;
        let rows = store
            .audit(&store::AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.entry.action.as_str(), r.entry.result, r.entry.status))
            .collect();
        use store::AuditResult::*;
        assert_eq!(
            seen,
            [
                ("zone.create", Refused, Some(429)),
                ("zone.create", Allowed, Some(200)),
                ("zone.create", Allowed, Some(200)),
            ]
        );
        assert!(rows[0]
            .entry
            .reason
            .as_deref()
            .unwrap()
            .starts_with("429 rate_limited: too many writes"));
        assert!(rows[1]
            .entry
            .reason
            .as_deref()
            .unwrap()
            .contains("written after the answer"));
        assert_eq!(rows[0].entry.remote.as_deref(), Some("10.0.0.9"));
    }

    #[test]
    fn connections_are_capped_per_client_and_in_all() {
        let cfg = HttpConfig {
            max_connections: 3,
            max_connections_per_client: 2,
            ..HttpConfig::default()
        };
        let conns = Arc::new(Mutex::new(Conns::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admit(&conns, &cfg, a).unwrap();
        let _a2 = admit(&conns, &cfg, a).unwrap();
        assert!(admit(&conns, &cfg, a).is_none(), "per client");
        let _b1 = admit(&conns, &cfg, b).unwrap();
        assert!(admit(&conns, &cfg, b).is_none(), "in all");
        drop(a1);
        assert!(
            admit(&conns, &cfg, b).is_some(),
            "a closed connection frees its place"
        );
        assert_eq!(conns.lock().unwrap().per_client.len(), 2);
    }
}
