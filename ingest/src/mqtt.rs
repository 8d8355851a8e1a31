//! MQTT ingest: subscribes with QoS 1 (persistent session, so a restart misses nothing the
//! broker queued) and acknowledges each PUBLISH with PUBACK only after the bus acknowledged
//! every reading in it, in the order the messages arrived. Payloads that cannot be accepted
//! are dead-lettered (the sender cannot be told) and then acknowledged.

use std::sync::Arc;
use std::time::Duration;

use model::LocalId;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{IngestError, SensorIngest};

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    /// `mqtt://host:port`
    pub url: String,
    /// Topic filter; the segment at `+` names the station.
    pub topic: String,
    /// Client id; keep it stable so the broker keeps the session across restarts.
    pub client_id: String,
    pub username: Option<String>,
    /// Secret: never logged.
    pub password: Option<String>,
    /// Largest MQTT packet accepted, bytes.
    pub max_packet_bytes: usize,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            topic: "ioc/sensors/+/readings".into(),
            client_id: "ioc-ingest".into(),
            username: None,
            password: None,
            max_packet_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt url {0:?} must look like mqtt://host:port")]
    BadUrl(String),
}

fn host_port(url: &str) -> Result<(String, u16), MqttError> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    let rest = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse().map_err(|_| MqttError::BadUrl(url.into()))?,
        )),
        None if !rest.is_empty() => Ok((rest.to_string(), 1883)),
        None => Err(MqttError::BadUrl(url.into())),
    }
}

/// The station named by `topic` under `filter` (the segment at the first `+`).
pub fn station_in_topic(filter: &str, topic: &str) -> Option<String> {
    let pos = filter.split('/').position(|s| s == "+")?;
    topic.split('/').nth(pos).map(str::to_string)
}

/// Runs until the task is dropped; reconnects with backoff.
pub async fn run(cfg: MqttConfig, ingest: Arc<SensorIngest>) -> Result<(), MqttError> {
    let (host, port) = host_port(&cfg.url)?;
    let mut opts = MqttOptions::new(&cfg.client_id, host.clone(), port);
    opts.set_manual_acks(true)
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(opts, 1024);
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(Publish, tokio::task::JoinHandle<()>)>();
    let acker = client.clone();
    tokio::spawn(async move {
        // PUBACKs go out in arrival order, each after its message is safely on the bus.
        while let Some((publish, handled)) = rx.recv().await {
            if handled.await.is_ok() {
                if let Err(e) = acker.ack(&publish).await {
                    warn!(error = %e, "could not queue PUBACK");
                }
            }
        }
    });
    let mut backoff = Duration::from_millis(200);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!(%host, port, topic = %cfg.topic, "mqtt connected");
                backoff = Duration::from_millis(200);
                if let Err(e) = client.subscribe(&cfg.topic, QoS::AtLeastOnce).await {
                    warn!(error = %e, "mqtt subscribe failed");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let handled = tokio::spawn(handle(ingest.clone(), cfg.topic.clone(), p.clone()));
                let _ = tx.send((p, handled));
            }
            Ok(_) => {}
            Err(e) => {
                warn!(%host, port, error = %e, "mqtt connection lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Gets one MQTT message onto the bus (readings or dead letter), retrying while the bus is
/// unavailable: the broker keeps redelivering until we PUBACK, so giving up would lose it.
async fn handle(ingest: Arc<SensorIngest>, filter: String, p: Publish) {
    let source = format!("mqtt:{}", p.topic);
    let topic_station = station_in_topic(&filter, &p.topic);
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = match (serde_json::from_slice(&p.payload), &topic_station) {
            (Ok(payload), Some(s)) => match LocalId::parse("station", s) {
                Ok(id) => ingest
                    .accept(&source, Some(&id), &payload)
                    .await
                    .map(|_| ()),
                Err(e) => {
                    ingest
                        .dead_letter_unparsed(
                            &source,
                            &p.payload,
                            format!("topic station: {}", e.reason),
                        )
                        .await
                }
            },
            (Ok(payload), None) => ingest.accept(&source, None, &payload).await.map(|_| ()),
            (Err(e), _) => {
                ingest
                    .dead_letter_unparsed(&source, &p.payload, format!("not JSON: {e}"))
                    .await
            }
        };
        match result {
            Ok(()) => return,
            Err(e @ (IngestError::BusUnavailable(_) | IngestError::NotReady)) => {
                warn!(%source, error = %e, "holding PUBACK until the bus takes the message");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_station_comes_from_the_plus_segment() {
        assert_eq!(
            station_in_topic(
                "ioc/sensors/+/readings",
                "ioc/sensors/hg-vt-sal-01/readings"
            )
            .as_deref(),
            Some("hg-vt-sal-01")
        );
        assert_eq!(
            station_in_topic("ioc/sensors/#", "ioc/sensors/x/readings"),
            None
        );
    }

    #[test]
    fn urls_parse_and_passwords_stay_out_of_debug_output() {
        assert_eq!(
            host_port("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(host_port("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(host_port("mqtt://h:notaport").is_err());
        let cfg = MqttConfig {
            password: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
