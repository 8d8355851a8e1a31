//! Websocket feeds for screens: a client subscribes to layers within a bbox and receives a
//! GeoJSON snapshot, then deltas numbered by the replica's sequence; it can move its bbox,
//! resume after a reconnect with `since`, and is told to `resync` (and sent a fresh snapshot)
//! when it falls too far behind; it can also replay the map from history (`replay`). Also
//! serves the pages (the reference wall at `/`, the wall's screens at `/wall/{layout}`, the
//! police camera map, the leaders' page) and the basemap's tiles.
//!
//! It owns *fan-out to clients*: per-connection queues that coalesce per entity and stay
//! bounded, so one slow client never slows the others nor grows memory. It must never change
//! state, and reads it only through the `replica` crate. Protocol: `PROTOCOL.md`.

pub mod basemap;
mod connection;
mod hub;
mod page;
pub mod protocol;

use std::sync::Arc;

use auth::Authenticator;
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use replica::Replica;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedsConfig {
    /// Distinct entities a subscription may have waiting to be sent before the client is
    /// told to resync (its memory bound).
    pub max_pending: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most features in one snapshot.
    pub snapshot_limit: usize,
    /// Largest client message, bytes.
    pub max_client_message: usize,
    /// Replays running at once on one connection.
    pub max_replays: usize,
    /// Bytes of replies, errors and alerts one connection may have queued unread; past it
    /// the socket is closed with 1008 (policy violation).
    pub max_outbox_bytes: usize,
    /// Seconds a feed may be quiet before the server pings it (keeps proxies from closing it).
    pub keepalive_s: f64,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        Self {
            max_pending: 5000,
            max_subscriptions: 16,
            snapshot_limit: 20_000,
            max_client_message: 64 * 1024,
            max_replays: 2,
            max_outbox_bytes: 4 * 1024 * 1024,
            keepalive_s: 25.0,
        }
    }
}

#[derive(Clone)]
pub struct FeedsState {
    pub replica: Arc<Replica>,
    pub auth: Arc<Authenticator>,
    pub config: FeedsConfig,
    /// Shown on the wall page: "memory" (embedded demo) or "kafka".
    pub mode: String,
    /// History for `replay` (`None`: this process keeps none).
    pub history: Option<Arc<dyn store::History>>,
    /// What the pages draw under the unit polygons.
    pub basemap: basemap::Basemap,
    /// The MBTiles basemap's tiles, when `basemap` is one (opened by the caller).
    pub tiles: Option<basemap::Tiles>,
    /// Websocket tickets used already (shared with the API's media tickets).
    pub used_tickets: Arc<auth::UsedTickets>,
}

/// What the routes share: the configured state and the one hub that dispatches changes.
#[derive(Clone)]
struct Feeds {
    state: FeedsState,
    hub: Arc<hub::Hub>,
}

impl FromRef<Feeds> for Arc<Authenticator> {
    fn from_ref(s: &Feeds) -> Self {
        s.state.auth.clone()
    }
}

impl FromRef<Feeds> for Arc<auth::UsedTickets> {
    fn from_ref(s: &Feeds) -> Self {
        s.state.used_tickets.clone()
    }
}

impl FromRef<Feeds> for Option<basemap::Tiles> {
    fn from_ref(s: &Feeds) -> Self {
        s.state.tiles.clone()
    }
}

impl FromRef<Feeds> for FeedsState {
    fn from_ref(s: &Feeds) -> Self {
        s.state.clone()
    }
}

/// The feeds' routes. Starts the hub that follows the replica's changes, so it must be
/// called within a tokio runtime.
pub fn router(state: FeedsState) -> Router {
    let hub = hub::Hub::start(&state.replica);
    let state = Feeds { state, hub };
    Router::new()
        .route("/ws", get(connection::upgrade))
        .route("/ws/tickets", axum::routing::post(connection::ticket))
        .route("/", get(page::index))
        .route("/wall.js", get(page::wall_js))
        .route("/wall.css", get(page::wall_css))
        .route("/leader", get(page::leader))
        .route("/leader.js", get(page::leader_js))
        .route("/leader.css", get(page::leader_css))
        .route("/wall/{layout}", get(page::screen))
        .route("/screen.js", get(page::screen_js))
        .route("/screen.css", get(page::screen_css))
        .route("/tiles/{z}/{x}/{file}", get(basemap::tile))
        .route("/cameras", get(page::cameras))
        .route("/cameras.js", get(page::cameras_js))
        .route("/cameras.css", get(page::cameras_css))
        .route("/js/{name}", get(page::module))
        .route("/vendor/leaflet/leaflet.js", get(page::leaflet_js))
        .route("/vendor/leaflet/leaflet.css", get(page::leaflet_css))
        .with_state(state)
}
