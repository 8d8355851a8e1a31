//! One websocket connection: a reader task (client ops), the feeds' hub offering it the
//! replica changes its subscriptions can show (into per-subscription pending maps, coalesced
//! per entity) and the writer (this task), which alone sends, so a slow socket only ever
//! delays its own connection. A subscription whose pending map grows past `max_pending` is
//! dropped to a `resync` and a fresh snapshot.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use replica::past::PastView;
use store::replay::ReplayRequest;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use auth::{Role, WsCaller};
use axum::extract::ws::CloseFrame;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use indexmap::IndexMap;
use model::{EntityId, FieldError, Layer};
use replica::{Change, Query, Rendered, Replica};
use tokio::sync::Notify;
use tracing::debug;

use crate::hub::Hub;
use crate::protocol::{self, ClientOp, ServerMsg, SubSpec};
use crate::{Feeds, FeedsConfig};

pub async fn upgrade(State(st): State<Feeds>, caller: WsCaller, ws: WebSocketUpgrade) -> Response {
    if !Layer::ALL.into_iter().any(|l| caller.0.role.can_view(l)) {
        return auth::Rejection::forbidden(format!("role {} has no layer to watch", caller.0.role))
            .into_response();
    }
    let max = st.state.config.max_client_message;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve(socket, st, caller.0))
}

/// `POST /ws/tickets`: a ticket opening one websocket as the bearer of the request's token,
/// for the pages (a browser cannot set the header on a websocket, and a token must never be
/// in a URL): `{ticket, expires_at, url}`.
pub async fn ticket(State(st): State<Feeds>, caller: auth::Caller) -> Response {
    if !Layer::ALL.into_iter().any(|l| caller.0.role.can_view(l)) {
        return auth::Rejection::forbidden(format!("role {} has no layer to watch", caller.0.role))
            .into_response();
    }
    let (ticket, exp) = st.state.auth.issue_ws_ticket(&caller.0);
    let expires_at = chrono::DateTime::from_timestamp(exp, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    (
        axum::http::StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({"ticket": ticket, "expires_at": expires_at, "url": format!("/ws?ticket={ticket}")})),
    )
        .into_response()
}

/// Close codes the pages understand (PROTOCOL.md): the token ran out, so reconnect with a
/// fresh one; and the standard policy-violation code for a client that does not read.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
pub const CLOSE_POLICY: u16 = 1008;

/// Why the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed, or the socket failed.
    Client,
    /// The client let more than the outbound budget queue up unread.
    OverBudget,
    /// The token the connection was opened with expired.
    Expired,
}

/// A pending change for one entity: its seq and record (`None` = remove), rendered once for
/// every client that sends it.
type Pending = IndexMap<EntityId, (u64, Option<Rendered>), Hashing>;

/// Every change is looked up in each nearby subscription's sets: a fast hash (randomly
/// seeded, so ids chosen to collide cannot slow a connection down).
type Hashing = foldhash::fast::RandomState;

struct Sub {
    query: Query,
    /// Entities the client currently holds (so we know what to remove).
    visible: HashSet<EntityId, Hashing>,
    pending: Pending,
    needs_snapshot: bool,
    /// Why the next snapshot is sent, when it is a resync.
    resync: Option<&'static str>,
    /// The seq the client's picture already covers (its snapshot's, or its resume point's):
    /// an older change arriving late from the hub is not sent again.
    floor: u64,
}

impl Sub {
    fn new(query: Query) -> Self {
        Self {
            query,
            visible: HashSet::default(),
            pending: Pending::default(),
            needs_snapshot: true,
            resync: None,
            floor: 0,
        }
    }

    /// Takes `c` if the client shows or should show its entity; `true` if it did.
    fn offer(&mut self, c: &Change, max_pending: usize) -> bool {
        if c.seq <= self.floor {
            return false;
        }
        let matches = c.record.as_deref().is_some_and(|r| self.query.matches(r));
        let relevant =
            matches || self.visible.contains(&c.entity) || self.pending.contains_key(&c.entity);
        if !relevant {
            return false;
        }
        let record = if matches { c.rendered() } else { None };
        match self.pending.get_mut(&c.entity) {
            Some(slot) if slot.0 >= c.seq => {}
            Some(slot) => *slot = (c.seq, record),
            None => {
                self.pending.insert(c.entity.clone(), (c.seq, record));
            }
        }
        if self.pending.len() > max_pending && !self.needs_snapshot {
            self.pending.clear();
            self.needs_snapshot = true;
            self.resync = Some("too far behind: pending changes exceeded the limit");
            metrics::counter!("ioc_ws_resyncs_total").increment(1);
        }
        true
    }
}

#[derive(Default)]
struct Outbox {
    control: VecDeque<String>,
    /// Bytes queued in `control`, held against `FeedsConfig::max_outbox_bytes`.
    control_bytes: usize,
    /// Set when the connection must end (and why); the writer closes it.
    ending: Option<Ending>,
    /// The front of `control` is a snapshot sent next, not counted in `control_bytes`.
    unbudgeted_front: bool,
    subs: HashMap<String, Sub>,
    /// Running replays by id.
    replays: HashMap<String, AbortHandle>,
}

impl Outbox {
    /// Queues `text`; `true` if that took the connection over `budget` (it must end).
    #[must_use]
    fn enqueue(&mut self, text: String, budget: usize) -> bool {
        if self.ending.is_some() {
            return false;
        }
        if self.control_bytes + text.len() > budget {
            self.ending = Some(Ending::OverBudget);
            self.control.clear();
            self.control_bytes = 0;
            metrics::counter!("ioc_ws_closed_over_budget_total").increment(1);
            return true;
        }
        self.control_bytes += text.len();
        self.control.push_back(text);
        false
    }

    fn pop(&mut self) -> Option<String> {
        let m = self.control.pop_front()?;
        if self.unbudgeted_front {
            self.unbudgeted_front = false;
        } else {
            self.control_bytes = self.control_bytes.saturating_sub(m.len());
        }
        Some(m)
    }
}

pub(crate) struct Conn {
    /// This connection in the hub.
    id: u64,
    hub: Arc<Hub>,
    replica: Arc<Replica>,
    history: Option<Arc<dyn store::History>>,
    config: FeedsConfig,
    role: Role,
    /// The cameras this caller may see.
    cameras: model::CameraScope,
    /// The sensitive matters this caller may see.
    sensitive: model::report::SensitiveScope,
    outbox: Mutex<Outbox>,
    wake: Notify,
    /// Signalled when the connection must end while the writer may be blocked in a send.
    ended: Notify,
    /// Replay frames, bounded: a slow client slows its replays, not the server.
    replay_tx: mpsc::Sender<String>,
}

impl Conn {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message for the client within the connection's outbound budget; past it
    /// the connection is ended (a client that does not read its replies cannot grow us).
    fn control(&self, msg: ServerMsg<'_>) {
        let text = msg.to_text();
        let over = self.lock().enqueue(text, self.config.max_outbox_bytes);
        self.queued(over);
    }

    /// Wakes the writer after a message was queued, and ends a send it is blocked in when
    /// the queue went over budget.
    fn queued(&self, over_budget: bool) {
        if over_budget {
            self.ended.notify_one();
        }
        self.wake.notify_one();
    }

    fn error(&self, id: Option<&str>, field: &str, reason: &str) {
        self.control(ServerMsg::Error { id, field, reason });
    }

    /// Checks the layers a subscription asks for, narrows it to the cameras and sensitive
    /// matters this caller may see, and resolves its `within` to an area the caller may see.
    fn admit(&self, spec: &mut SubSpec) -> Result<(), FieldError> {
        spec.query.cameras = self.cameras.clone();
        spec.query.sensitive = self.sensitive.clone();
        if let Some(l) = spec.query.layers.iter().find(|l| !self.role.can_view(**l)) {
            return Err(FieldError::new(
                "layers",
                format!("role {} may not see layer {l}", self.role),
            ));
        }
        if let Some(w) = &spec.within {
            let may_see = |r: &model::StateRecord| {
                self.role.can_view(r.layer)
                    && replica::visible_with(&self.cameras, &self.sensitive, r)
            };
            spec.query.within = Some(self.replica.resolve_within(w, may_see)?);
        }
        Ok(())
    }

    /// Adds or replaces subscription `id`, within the per-connection limit, and indexes it
    /// in the hub. A resumed subscription (`catch_up`) is first brought up to date with the
    /// changes the hub offered before it was indexed; the outbox stays locked meanwhile, so
    /// the hub's next offer waits for it.
    fn insert(&self, id: String, mut sub: Sub, catch_up: bool) {
        let mut ob = self.lock();
        if !ob.subs.contains_key(&id) && ob.subs.len() >= self.config.max_subscriptions {
            drop(ob);
            return self.error(Some(&id), "id", "too many subscriptions on this connection");
        }
        self.hub.index_sub(self.id, &id, &sub.query);
        if catch_up {
            if let Some((_, changes)) = self.replica.changes_since(sub.floor) {
                for c in &changes {
                    sub.offer(c, usize::MAX);
                }
            } else {
                sub.needs_snapshot = true;
            }
        }
        ob.subs.insert(id, sub);
    }

    fn handle(&self, text: &str) {
        let op = match protocol::parse(text) {
            Ok(op) => op,
            Err(e) => return self.error(None, &e.field, &e.reason),
        };
        match op {
            ClientOp::Subscribe(mut spec) | ClientOp::Update(mut spec) => {
                if let Err(e) = self.admit(&mut spec) {
                    return self.error(Some(&spec.id), &e.field, &e.reason);
                }
                self.insert(spec.id, Sub::new(spec.query), false);
            }
            ClientOp::Resume {
                mut spec,
                since,
                epoch,
            } => {
                if let Err(e) = self.admit(&mut spec) {
                    return self.error(Some(&spec.id), &e.field, &e.reason);
                }
                let mut sub = Sub::new(spec.query);
                let changes = (epoch == self.replica.epoch())
                    .then(|| self.replica.changes_since(since))
                    .flatten();
                let resumed = changes.is_some();
                if let Some((seq, changes)) = changes {
                    // The client holds what matched at `since`; assume it holds what matches now
                    // plus whatever changed since (removals are harmless if it did not).
                    let (_, now) = self
                        .replica
                        .snapshot(&sub.query, self.config.snapshot_limit);
                    sub.visible = now.iter().map(|r| r.entity.clone()).collect();
                    sub.needs_snapshot = false;
                    for c in &changes {
                        sub.visible.insert(c.entity.clone());
                        sub.offer(c, usize::MAX);
                    }
                    sub.floor = seq;
                }
                self.insert(spec.id, sub, resumed);
            }
            ClientOp::Unsubscribe { id } => {
                let removed = self.lock().subs.remove(&id).is_some();
                self.hub.unindex_sub(self.id, &id);
                if removed {
                    self.control(ServerMsg::Unsubscribed { sub: &id });
                } else {
                    self.error(Some(&id), "id", "no such subscription");
                }
            }
            ClientOp::Ping { t } => self.control(ServerMsg::Pong { t }),
            ClientOp::Replay {
                spec,
                from,
                to,
                speed,
            } => self.start_replay(spec, from, to, speed),
            ClientOp::ReplayStop { id } => {
                let handle = self.lock().replays.remove(&id);
                match handle {
                    Some(h) => {
                        h.abort();
                        self.control(ServerMsg::ReplayStopped { replay: &id });
                    }
                    None => self.error(Some(&id), "id", "no such replay"),
                }
            }
        }
        self.wake.notify_one();
    }

    fn start_replay(
        &self,
        mut spec: SubSpec,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        speed: f64,
    ) {
        let id = spec.id.clone();
        if let Err(e) = self.admit(&mut spec) {
            return self.error(Some(&id), &e.field, &e.reason);
        }
        if let Some(l) = spec
            .query
            .layers
            .iter()
            .find(|l| !Layer::REPLAYABLE.contains(l))
        {
            let reason = format!("{l} cannot be replayed yet; replayable: salinity, air_quality");
            return self.error(Some(&id), "layers", &reason);
        }
        let Some(history) = self.history.clone() else {
            return self.error(Some(&id), "op", "this server keeps no history to replay");
        };
        {
            let mut ob = self.lock();
            ob.replays.retain(|_, h| !h.is_finished());
            if !ob.replays.contains_key(&id) && ob.replays.len() >= self.config.max_replays {
                drop(ob);
                return self.error(Some(&id), "id", "too many replays on this connection");
            }
        }
        let (_, base) = self
            .replica
            .snapshot(&spec.query, self.config.snapshot_limit);
        let view = PastView::new(&base);
        let req = match ReplayRequest::new(view.stations(), from, to, speed) {
            Ok(r) => r,
            Err(e) => return self.error(Some(&id), &e.field, &e.reason),
        };
        let mut lines = view.play(history, req, id.clone());
        let tx = self.replay_tx.clone();
        let task = tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
        });
        if let Some(old) = self.lock().replays.insert(id, task.abort_handle()) {
            old.abort();
        }
    }

    /// Sends an alert as it is raised or changes, if this caller may see it.
    pub(crate) fn alert(&self, c: &Change) {
        let Some(r) = c.record.as_deref() else { return };
        if r.layer == Layer::Alerts
            && self.role.can_view(Layer::Alerts)
            && replica::visible_with(&self.cameras, &self.sensitive, r)
        {
            let text = ServerMsg::Alert {
                alert: r.to_feature(),
            }
            .to_text();
            // Within the same budget as every other queued message.
            let over = self.lock().enqueue(text, self.config.max_outbox_bytes);
            self.queued(over);
        }
    }

    /// Offers a change to the subscriptions `subs` (those the hub found near it); wakes the
    /// writer only if one of them took it.
    pub(crate) fn offer(&self, subs: &[Arc<str>], c: &Change) {
        let mut ob = self.lock();
        let mut taken = false;
        for id in subs {
            if let Some(sub) = ob.subs.get_mut(&**id) {
                taken |= sub.offer(c, self.config.max_pending);
            }
        }
        drop(ob);
        if taken {
            self.wake.notify_one();
        }
    }

    pub(crate) fn lagged(&self) {
        let mut ob = self.lock();
        for sub in ob.subs.values_mut() {
            sub.pending.clear();
            sub.needs_snapshot = true;
            sub.resync = Some("too far behind: the change feed overflowed");
        }
        metrics::counter!("ioc_ws_resyncs_total").increment(1);
        drop(ob);
        self.wake.notify_one();
    }

    /// The next message to send, or `None` when there is nothing to do now.
    fn next_message(&self) -> Option<String> {
        let mut ob = self.lock();
        if let Some(m) = ob.pop() {
            return Some(m);
        }
        // Snapshots first: a subscription's snapshot must precede its deltas.
        let snap_id = ob
            .subs
            .iter()
            .find(|(_, s)| s.needs_snapshot)
            .map(|(id, _)| id.clone());
        if let Some(id) = snap_id {
            let query = ob.subs[&id].query.clone();
            drop(ob);
            let (seq, hits) = self.replica.hits(&query, self.config.snapshot_limit);
            let mut ob = self.lock();
            let sub = ob.subs.get_mut(&id)?;
            if sub.query != query {
                return None; // updated meanwhile: the loop takes a new snapshot
            }
            sub.needs_snapshot = false;
            sub.floor = seq;
            sub.pending.retain(|_, (s, _)| *s > seq);
            sub.visible = hits.iter().map(|h| h.record.entity.clone()).collect();
            let resync = sub.resync.take();
            drop(ob);
            let snapshot = ServerMsg::Snapshot {
                sub: &id,
                seq,
                epoch: self.replica.epoch(),
                features: geojson::FeatureCollection {
                    bbox: query.bbox.map(|b| b.to_vec()),
                    features: hits.iter().map(|h| h.to_feature()).collect(),
                    foreign_members: None,
                },
            }
            .to_text();
            return Some(match resync {
                Some(reason) => {
                    // Resync notice then snapshot, as two frames; the snapshot goes first in
                    // line (it is sent next, so it is not held against the budget).
                    let mut ob = self.lock();
                    ob.control.push_front(snapshot);
                    ob.unbudgeted_front = true;
                    drop(ob);
                    ServerMsg::Resync { sub: &id, reason }.to_text()
                }
                None => snapshot,
            });
        }
        let delta_id = ob
            .subs
            .iter()
            .find(|(_, s)| !s.pending.is_empty())
            .map(|(id, _)| id.clone())?;

        let sub = ob.subs.get_mut(&delta_id)?;
        let near = sub.query.near;
        let pending = std::mem::take(&mut sub.pending);
        let seq = pending.values().map(|(s, _)| *s).max().unwrap_or(0);
        let mut upsert = Vec::new();
        let mut remove = Vec::new();
        for (entity, (_, record)) in pending {
            match record {
                Some(r) => {
                    sub.visible.insert(entity);
                    upsert.push(r);
                }
                None => {
                    sub.visible.remove(&entity);
                    remove.push(entity.to_string());
                }
            }
        }
        drop(ob);
        // A `near` subscription's features carry their distance, as in its snapshot: those
        // are its own, not the rendering every other client shares.
        let with_distance: Vec<Box<serde_json::value::RawValue>> = match near {
            None => Vec::new(),
            Some(n) => upsert
                .iter()
                .filter_map(|r| {
                    let hit = replica::Hit {
                        record: r.record.clone(),
                        distance_m: n.reach(&r.record.geometry),
                    };
                    serde_json::value::to_raw_value(&hit.to_feature()).ok()
                })
                .collect(),
        };
        let upsert: Vec<&serde_json::value::RawValue> = match near {
            None => upsert.iter().map(Rendered::feature_json).collect(),
            Some(_) => with_distance.iter().map(|f| &**f).collect(),
        };
        Some(
            ServerMsg::Delta {
                sub: &delta_id,
                seq,
                upsert,
                remove,
            }
            .to_text(),
        )
    }
}

async fn serve(socket: WebSocket, feeds: Feeds, claims: auth::Claims) {
    let Feeds { state: st, hub } = feeds;
    let role = claims.role;
    metrics::gauge!("ioc_ws_clients").increment(1.0);
    let (replay_tx, mut replay_rx) = mpsc::channel(4);
    let conn = Arc::new_cyclic(|me| Conn {
        id: hub.join(me.clone()),
        hub: hub.clone(),
        replica: st.replica.clone(),
        history: st.history.clone(),
        config: st.config.clone(),
        role,
        cameras: claims.camera_scope(),
        sensitive: claims.sensitive_scope(),
        outbox: Mutex::new(Outbox::default()),
        wake: Notify::new(),
        ended: Notify::new(),
        replay_tx,
    });
    let layers: Vec<Layer> = Layer::ALL
        .into_iter()
        .filter(|l| role.can_view(*l))
        .collect();
    conn.control(ServerMsg::Hello {
        epoch: st.replica.epoch(),
        seq: st.replica.seq(),
        layers,
    });
    let (mut tx, mut rx) = socket.split();

    let reader = {
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                // A connection that is ending is only drained (so that closing it does not
                // reset it under the close frame): nothing a client sends then is handled.
                let ending = conn.lock().ending.is_some();
                match msg {
                    Message::Close(_) => break,
                    _ if ending => {}
                    Message::Text(t) => conn.handle(t.as_str()),
                    Message::Binary(_) => conn.error(None, "", "send text frames with JSON"),
                    _ => {}
                }
            }
            conn.lock().ending.get_or_insert(Ending::Client);
            conn.wake.notify_one();
        })
    };
    // The token's end is the connection's: a socket must not outlive the right to it.
    let expires = tokio::time::Instant::now()
        + std::time::Duration::from_secs(
            u64::try_from(claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0),
        );
    // A ping when nothing was sent for a while keeps proxies and NATs from closing a quiet
    // feed (nginx's proxy_read_timeout, a tablet's carrier) and finds a vanished client.
    let quiet = std::time::Duration::from_secs_f64(st.config.keepalive_s.clamp(1.0, 3600.0));
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + quiet, quiet);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A flag, not a timer reset per message: the send path stays as cheap as it was.
    let mut sent_since_tick = false;
    let ending = loop {
        let notified = conn.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(e) = conn.lock().ending {
            break e;
        }
        // Live messages first, then replay frames; otherwise wait for either.
        let text = match conn.next_message() {
            Some(text) => text,
            None => match replay_rx.try_recv() {
                Ok(text) => text,
                Err(_) => tokio::select! {
                    _ = notified => continue,
                    _ = tokio::time::sleep_until(expires) => break Ending::Expired,
                    Some(text) = replay_rx.recv() => text,
                    _ = keepalive.tick() => {
                        // Something went out since the last tick: the feed is not quiet.
                        if std::mem::take(&mut sent_since_tick) {
                            continue;
                        }
                        let ping = tx.send(Message::Ping(Default::default()));
                        match tokio::time::timeout(std::time::Duration::from_secs(10), ping).await {
                            Ok(Ok(())) => continue,
                            _ => break Ending::Client,
                        }
                    }
                },
            },
        };
        metrics::counter!("ioc_ws_messages_sent_total").increment(1);
        // A send blocked on a client that does not read ends when the connection must.
        let ended = async {
            loop {
                conn.ended.notified().await;
                if let Some(e) = conn.lock().ending {
                    return e;
                }
            }
        };
        sent_since_tick = true;
        tokio::select! {
            sent = tx.send(Message::Text(text.into())) => if sent.is_err() { break Ending::Client },
            e = ended => break e,
            _ = tokio::time::sleep_until(expires) => break Ending::Expired,
        }
    };
    let close = match ending {
        Ending::Client => None,
        Ending::OverBudget => Some((
            CLOSE_POLICY,
            "outbound budget exceeded: read the messages sent to you",
        )),
        Ending::Expired => Some((
            CLOSE_TOKEN_EXPIRED,
            "token expired: reconnect with a fresh token",
        )),
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // A client behind on reading gets a while to read up to the close frame.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tx.send(Message::Close(Some(frame))),
        )
        .await;
    }
    debug!(?ending, "websocket closed");
    for (_, h) in conn.lock().replays.drain() {
        h.abort();
    }
    {
        let ob = conn.lock();
        hub.leave(conn.id, ob.subs.keys());
    }
    if close.is_some() {
        // Until the client answers the close (or a while has passed), drain what it sends.
        let mut reader = reader;
        if tokio::time::timeout(std::time::Duration::from_secs(10), &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    } else {
        reader.abort();
    }
    let _ = tx.close().await;
    metrics::gauge!("ioc_ws_clients").decrement(1.0);
}
