//! The pages and their static files, compiled into the binary (no build step, no files to
//! lose at deploy time): the reference wall page at `/`, a screen of a wall layout at
//! `/wall/{layout}?screen=N`, the leaders' tablet page at `/leader`, the police camera map at
//! `/cameras`, and the ES modules they share under `/js/`. A page takes a token from
//! `#token=` or asks for one.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::FeedsState;

const INDEX: &str = include_str!("../static/index.html");
const WALL_JS: &str = include_str!("../static/wall.js");
const WALL_CSS: &str = include_str!("../static/wall.css");
const LEADER: &str = include_str!("../static/leader.html");
const LEADER_JS: &str = include_str!("../static/leader.js");
const LEADER_CSS: &str = include_str!("../static/leader.css");
const CAMERAS: &str = include_str!("../static/cameras.html");
const CAMERAS_JS: &str = include_str!("../static/cameras.js");
const CAMERAS_CSS: &str = include_str!("../static/cameras.css");
const SCREEN: &str = include_str!("../static/screen.html");
const SCREEN_JS: &str = include_str!("../static/screen.js");
const SCREEN_CSS: &str = include_str!("../static/screen.css");
const MAP_JS: &str = include_str!("../static/js/map.js");
const CAMERA_TILE_JS: &str = include_str!("../static/js/camera_tile.js");
const API_JS: &str = include_str!("../static/js/api.js");
const FEED_JS: &str = include_str!("../static/js/feed.js");
const FORMAT_JS: &str = include_str!("../static/js/format.js");
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

/// A page with what it is told by the server: the mode (demo or live) and the basemap (as
/// JSON in an attribute, escaped for it).
fn with_mode(page: &str, st: &FeedsState) -> Html<String> {
    let basemap = st.basemap.for_page().to_string();
    let attr = basemap
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Html(
        page.replace(
            "{{MODE}}",
            if st.mode == "memory" { "demo" } else { "live" },
        )
        .replace("{{BASEMAP}}", &attr),
    )
}

/// A screen of a wall layout; the page reads the layout and `?screen=` itself (a layout
/// that does not exist is said on the screen, which waits for it).
pub async fn screen(
    State(st): State<FeedsState>,
    axum::extract::Path(layout): axum::extract::Path<String>,
) -> Response {
    if model::LocalId::parse("layout", &layout).is_err() {
        return api_error::ApiError::not_found("layout", format!("no layout {layout}"))
            .into_response();
    }
    with_mode(SCREEN, &st).into_response()
}

pub async fn screen_js() -> Response {
    asset(JS, SCREEN_JS)
}

pub async fn screen_css() -> Response {
    asset("text/css; charset=utf-8", SCREEN_CSS)
}

pub async fn index(State(st): State<FeedsState>) -> Html<String> {
    with_mode(INDEX, &st)
}

pub async fn leader(State(st): State<FeedsState>) -> Html<String> {
    with_mode(LEADER, &st)
}

pub async fn cameras(State(st): State<FeedsState>) -> Html<String> {
    with_mode(CAMERAS, &st)
}

const JS: &str = "text/javascript; charset=utf-8";

pub async fn cameras_js() -> Response {
    asset(JS, CAMERAS_JS)
}

pub async fn cameras_css() -> Response {
    asset("text/css; charset=utf-8", CAMERAS_CSS)
}

pub async fn leader_js() -> Response {
    asset(JS, LEADER_JS)
}

pub async fn leader_css() -> Response {
    asset("text/css; charset=utf-8", LEADER_CSS)
}

/// A shared module by name (`/js/{name}`); 404 for any other.
pub async fn module(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match name.as_str() {
        "api.js" => asset(JS, API_JS),
        "feed.js" => asset(JS, FEED_JS),
        "format.js" => asset(JS, FORMAT_JS),
        "camera_tile.js" => asset(JS, CAMERA_TILE_JS),
        "map.js" => asset(JS, MAP_JS),
        _ => api_error::ApiError::not_found("name", format!("no module {name}")).into_response(),
    }
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
