//! One websocket connection: a reader task (client ops), a pump task (replica changes into
//! per-subscription pending maps, coalesced per entity) and the writer (this task), which
//! alone sends, so a slow socket only ever delays its own connection. A subscription whose
//! pending map grows past `max_pending` is dropped to a `resync` and a fresh snapshot.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use replica::past::PastView;
use store::replay::ReplayRequest;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use auth::{Caller, Role};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use indexmap::IndexMap;
use model::{EntityId, Layer, StateRecord};
use replica::{Change, Query, Replica};
use tokio::sync::{broadcast, Notify};
use tracing::debug;

use crate::protocol::{self, ClientOp, ServerMsg, SubSpec};
use crate::{FeedsConfig, FeedsState};

pub async fn upgrade(
    State(st): State<FeedsState>,
    caller: Caller,
    ws: WebSocketUpgrade,
) -> Response {
    let max = st.config.max_client_message;
    ws.max_message_size(max)
        .on_upgrade(move |socket| serve(socket, st, caller.0))
}

/// A pending change for one entity: its seq and record (`None` = remove).
type Pending = IndexMap<EntityId, (u64, Option<Arc<StateRecord>>)>;

struct Sub {
    query: Query,
    /// Entities the client currently holds (so we know what to remove).
    visible: HashSet<EntityId>,
    pending: Pending,
    needs_snapshot: bool,
    /// Why the next snapshot is sent, when it is a resync.
    resync: Option<&'static str>,
}

impl Sub {
    fn new(query: Query) -> Self {
        Self {
            query,
            visible: HashSet::new(),
            pending: Pending::new(),
            needs_snapshot: true,
            resync: None,
        }
    }

    fn offer(&mut self, c: &Change, max_pending: usize) {
        let matches = c.record.as_deref().is_some_and(|r| self.query.matches(r));
        let relevant =
            matches || self.visible.contains(&c.entity) || self.pending.contains_key(&c.entity);
        if !relevant {
            return;
        }
        let record = if matches { c.record.clone() } else { None };
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
    }
}

#[derive(Default)]
struct Outbox {
    control: VecDeque<String>,
    subs: HashMap<String, Sub>,
    /// Running replays by id.
    replays: HashMap<String, AbortHandle>,
    closed: bool,
}

struct Conn {
    replica: Arc<Replica>,
    history: Option<Arc<dyn store::History>>,
    config: FeedsConfig,
    role: Role,
    /// The cameras this caller may see.
    cameras: model::CameraScope,
    outbox: Mutex<Outbox>,
    wake: Notify,
    /// Replay frames, bounded: a slow client slows its replays, not the server.
    replay_tx: mpsc::Sender<String>,
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn control(&self, msg: ServerMsg<'_>) {
        self.lock().control.push_back(msg.to_text());
        self.wake.notify_one();
    }

    fn error(&self, id: Option<&str>, field: &str, reason: &str) {
        self.control(ServerMsg::Error { id, field, reason });
    }

    /// Checks the layers a subscription asks for, and narrows it to the cameras this caller
    /// may see.
    fn admit(&self, spec: &mut SubSpec) -> Result<(), String> {
        spec.query.cameras = self.cameras.clone();
        match spec.query.layers.iter().find(|l| !self.role.can_view(**l)) {
            Some(l) => Err(format!("role {} may not see layer {l}", self.role)),
            None => Ok(()),
        }
    }

    /// Adds or replaces subscription `id`, within the per-connection limit.
    fn insert(&self, id: String, sub: Sub) {
        let mut ob = self.lock();
        if !ob.subs.contains_key(&id) && ob.subs.len() >= self.config.max_subscriptions {
            drop(ob);
            return self.error(Some(&id), "id", "too many subscriptions on this connection");
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
                if let Err(reason) = self.admit(&mut spec) {
                    return self.error(Some(&spec.id), "layers", &reason);
                }
                self.insert(spec.id, Sub::new(spec.query));
            }
            ClientOp::Resume {
                mut spec,
                since,
                epoch,
            } => {
                if let Err(reason) = self.admit(&mut spec) {
                    return self.error(Some(&spec.id), "layers", &reason);
                }
                let mut sub = Sub::new(spec.query);
                let changes = (epoch == self.replica.epoch())
                    .then(|| self.replica.changes_since(since))
                    .flatten();
                if let Some((_, changes)) = changes {
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
                }
                self.insert(spec.id, sub);
            }
            ClientOp::Unsubscribe { id } => {
                let removed = self.lock().subs.remove(&id).is_some();
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
        if let Err(reason) = self.admit(&mut spec) {
            return self.error(Some(&id), "layers", &reason);
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

    fn pump(&self, c: &Change) {
        if let Some(r) = c.record.as_deref() {
            if r.layer == Layer::Alerts
                && self.role.can_view(Layer::Alerts)
                && replica::visible_with(&self.cameras, r)
            {
                let mut ob = self.lock();
                // Bounded like everything else: a client this far behind resyncs the layer.
                if ob.control.len() < self.config.max_pending {
                    ob.control.push_back(
                        ServerMsg::Alert {
                            alert: r.to_feature(),
                        }
                        .to_text(),
                    );
                }
            }
        }
        let mut ob = self.lock();
        for sub in ob.subs.values_mut() {
            sub.offer(c, self.config.max_pending);
        }
        drop(ob);
        self.wake.notify_one();
    }

    fn lagged(&self) {
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
        if let Some(m) = ob.control.pop_front() {
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
            let (seq, records) = self.replica.snapshot(&query, self.config.snapshot_limit);
            let mut ob = self.lock();
            let sub = ob.subs.get_mut(&id)?;
            if sub.query != query {
                return None; // updated meanwhile: the loop takes a new snapshot
            }
            sub.needs_snapshot = false;
            sub.pending.retain(|_, (s, _)| *s > seq);
            sub.visible = records.iter().map(|r| r.entity.clone()).collect();
            let resync = sub.resync.take();
            drop(ob);
            let snapshot = ServerMsg::Snapshot {
                sub: &id,
                seq,
                epoch: self.replica.epoch(),
                features: geojson::FeatureCollection {
                    bbox: query.bbox.map(|b| b.to_vec()),
                    features: records.iter().map(|r| r.to_feature()).collect(),
                    foreign_members: None,
                },
            }
            .to_text();
            return Some(match resync {
                Some(reason) => {
                    // Resync notice then snapshot, as two frames; queue the snapshot first in line.
                    self.lock().control.push_front(snapshot);
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
        let pending = std::mem::take(&mut sub.pending);
        let seq = pending.values().map(|(s, _)| *s).max().unwrap_or(0);
        let mut upsert = Vec::new();
        let mut remove = Vec::new();
        for (entity, (_, record)) in pending {
            match record {
                Some(r) => {
                    sub.visible.insert(entity);
                    upsert.push(r.to_feature());
                }
                None => {
                    sub.visible.remove(&entity);
                    remove.push(entity.to_string());
                }
            }
        }
        drop(ob);
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

async fn serve(socket: WebSocket, st: FeedsState, claims: auth::Claims) {
    let role = claims.role;
    metrics::gauge!("ioc_ws_clients").increment(1.0);
    let (replay_tx, mut replay_rx) = mpsc::channel(4);
    let conn = Arc::new(Conn {
        replica: st.replica.clone(),
        history: st.history.clone(),
        config: st.config.clone(),
        role,
        cameras: claims.camera_scope(),
        outbox: Mutex::new(Outbox::default()),
        wake: Notify::new(),
        replay_tx,
    });
    let layers: Vec<Layer> = Layer::ALL
        .into_iter()
        .filter(|l| role.can_view(*l))
        .collect();
    let changes = st.replica.subscribe();
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
                match msg {
                    Message::Text(t) => conn.handle(t.as_str()),
                    Message::Binary(_) => conn.error(None, "", "send text frames with JSON"),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            conn.lock().closed = true;
            conn.wake.notify_one();
        })
    };
    let pump = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut changes = changes;
            loop {
                match changes.recv().await {
                    Ok(c) => conn.pump(&c),
                    Err(broadcast::error::RecvError::Lagged(_)) => conn.lagged(),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    };

    loop {
        let notified = conn.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if conn.lock().closed {
            break;
        }
        // Live messages first, then replay frames; otherwise wait for either.
        let text = match conn.next_message() {
            Some(text) => text,
            None => match replay_rx.try_recv() {
                Ok(text) => text,
                Err(_) => tokio::select! {
                    _ = notified => continue,
                    Some(text) = replay_rx.recv() => text,
                },
            },
        };
        metrics::counter!("ioc_ws_messages_sent_total").increment(1);
        if tx.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
    debug!("websocket closed");
    for (_, h) in conn.lock().replays.drain() {
        h.abort();
    }
    reader.abort();
    pump.abort();
    let _ = tx.close().await;
    metrics::gauge!("ioc_ws_clients").decrement(1.0);
}
