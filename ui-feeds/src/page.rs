//! The reference wall page and its static files, compiled into the binary (no build step, no
//! files to lose at deploy time). The page takes a token from `#token=` or asks for one.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::FeedsState;

const INDEX: &str = include_str!("../static/index.html");
const WALL_JS: &str = include_str!("../static/wall.js");
const WALL_CSS: &str = include_str!("../static/wall.css");
const LEAFLET_JS: &str = include_str!("../static/vendor/leaflet/leaflet.js");
const LEAFLET_CSS: &str = include_str!("../static/vendor/leaflet/leaflet.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub async fn index(State(st): State<FeedsState>) -> Html<String> {
    Html(INDEX.replace(
        "{{MODE}}",
        if st.mode == "memory" { "demo" } else { "live" },
    ))
}

pub async fn wall_js() -> Response {
    asset("text/javascript; charset=utf-8", WALL_JS)
}

pub async fn wall_css() -> Response {
    asset("text/css; charset=utf-8", WALL_CSS)
}

pub async fn leaflet_js() -> Response {
    asset("text/javascript; charset=utf-8", LEAFLET_JS)
}

pub async fn leaflet_css() -> Response {
    asset("text/css; charset=utf-8", LEAFLET_CSS)
}
