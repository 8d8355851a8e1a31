//! The websocket messages (see PROTOCOL.md). Client messages are parsed leniently into
//! `ClientOp` so that every mistake gets an `error` naming the field, never a dropped socket.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use model::spatial::{Near, WithinSpec};
use model::state::check_bbox;
use model::{FieldError, Layer};
use replica::Query;
use serde::Serialize;
use serde_json::Value;

/// What a subscription asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SubSpec {
    pub id: String,
    pub query: Query,
    /// The area asked for, resolved against the replica when the subscription is admitted.
    pub within: Option<WithinSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientOp {
    Subscribe(SubSpec),
    Update(SubSpec),
    Unsubscribe {
        id: String,
    },
    Resume {
        spec: SubSpec,
        since: u64,
        epoch: String,
    },
    Ping {
        t: Option<Value>,
    },
    /// Replays the map from history: `spec.id` names the replay.
    Replay {
        spec: SubSpec,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        /// Event seconds per second; 0 = unpaced.
        speed: f64,
    },
    ReplayStop {
        id: String,
    },
}

fn time_field(v: &Value, f: &str) -> Result<DateTime<Utc>, FieldError> {
    let s = str_field(v, f)?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| FieldError::new(f, format!("must be an RFC 3339 time ({e})")))
}

fn str_field<'a>(v: &'a Value, f: &str) -> Result<&'a str, FieldError> {
    v.get(f)
        .and_then(Value::as_str)
        .ok_or_else(|| FieldError::new(f, "is required and must be a string"))
}

fn sub_id(v: &Value) -> Result<String, FieldError> {
    let id = str_field(v, "id")?;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(FieldError::new(
            "id",
            "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'",
        ));
    }
    Ok(id.to_string())
}

fn spec(v: &Value) -> Result<SubSpec, FieldError> {
    let id = sub_id(v)?;
    let layers = match v.get("layers") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|l| {
                l.as_str()
                    .ok_or_else(|| FieldError::new("layers", "must be strings"))
                    .and_then(str::parse)
            })
            .collect::<Result<BTreeSet<Layer>, _>>()?,
        _ => {
            return Err(FieldError::new(
                "layers",
                "is required: a non-empty array of layer names",
            ))
        }
    };
    let bbox = match v.get("bbox") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.len() == 4 => {
            let mut b = [0.0; 4];
            for (i, x) in a.iter().enumerate() {
                b[i] = x
                    .as_f64()
                    .ok_or_else(|| FieldError::new("bbox", "must be four numbers [w, s, e, n]"))?;
            }
            Some(check_bbox(b)?)
        }
        Some(_) => return Err(FieldError::new("bbox", "must be four numbers [w, s, e, n]")),
    };
    let near = match v.get("near") {
        None | Some(Value::Null) => None,
        Some(n) => Some(Near::from_json(n)?),
    };
    let within = match v.get("within") {
        None | Some(Value::Null) => None,
        Some(w) => Some(WithinSpec::from_json(w)?),
    };
    let unit = match v.get("filter").and_then(|f| f.get("unit")) {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(FieldError::new("filter.unit", "must be a unit id string")),
    };
    let sector = match v.get("filter").and_then(|f| f.get("sector")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(model::indicator::Sector::parse("filter.sector", s)?),
        Some(_) => return Err(FieldError::new("filter.sector", "must be a sector name")),
    };
    Ok(SubSpec {
        id,
        query: Query {
            layers,
            bbox,
            unit,
            sector,
            // Set from the caller when the subscription is admitted.
            near,
            // Set from the caller when the subscription is admitted.
            cameras: Default::default(),
            sensitive: Default::default(),
            within: None,
        },
        within,
    })
}

/// Parses one client message.
pub fn parse(text: &str) -> Result<ClientOp, FieldError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| FieldError::new("", format!("not JSON: {e}")))?;
    match str_field(&v, "op")? {
        "subscribe" => Ok(ClientOp::Subscribe(spec(&v)?)),
        "update" => Ok(ClientOp::Update(spec(&v)?)),
        "unsubscribe" => Ok(ClientOp::Unsubscribe { id: sub_id(&v)? }),
        "resume" => {
            let since = v
                .get("since")
                .and_then(Value::as_u64)
                .ok_or_else(|| FieldError::new("since", "is required: the last seq received"))?;
            let epoch = v
                .get("epoch")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Ok(ClientOp::Resume {
                spec: spec(&v)?,
                since,
                epoch,
            })
        }
        "ping" => Ok(ClientOp::Ping {
            t: v.get("t").cloned(),
        }),
        "replay" => Ok(ClientOp::Replay {
            spec: spec(&v)?,
            from: time_field(&v, "from")?,
            to: time_field(&v, "to")?,
            speed: match v.get("speed") {
                None | Some(Value::Null) => 60.0,
                Some(s) => s.as_f64().ok_or_else(|| {
                    FieldError::new("speed", "must be a number: event seconds per second")
                })?,
            },
        }),
        "replay_stop" => Ok(ClientOp::ReplayStop { id: sub_id(&v)? }),
        other => Err(FieldError::new(
            "op",
            format!("unknown op {other:?}; known: subscribe, update, unsubscribe, resume, ping, replay, replay_stop"),
        )),
    }
}

/// Server messages.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    Hello {
        epoch: &'a str,
        seq: u64,
        layers: Vec<Layer>,
    },
    Snapshot {
        sub: &'a str,
        seq: u64,
        epoch: &'a str,
        features: geojson::FeatureCollection,
    },
    Delta {
        sub: &'a str,
        seq: u64,
        /// Features as GeoJSON text, each rendered once for all the clients it goes to.
        upsert: Vec<&'a serde_json::value::RawValue>,
        remove: Vec<String>,
    },
    Resync {
        sub: &'a str,
        reason: &'a str,
    },
    Unsubscribed {
        sub: &'a str,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        field: &'a str,
        reason: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        t: Option<Value>,
    },
    ReplayStopped {
        replay: &'a str,
    },
    /// An alert was raised or changed (sent to every client that may see alerts, whatever
    /// it subscribed to).
    Alert {
        alert: geojson::Feature,
    },
}

impl ServerMsg<'_> {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_parses_layers_bbox_and_filter() {
        let op = parse(r#"{"op":"subscribe","id":"s1","layers":["salinity"],"bbox":[105,9,106,10],"filter":{"unit":"hg"}}"#).unwrap();
        let ClientOp::Subscribe(s) = op else { panic!() };
        assert_eq!(s.query.bbox, Some([105.0, 9.0, 106.0, 10.0]));
        assert_eq!(s.query.unit.as_deref(), Some("hg"));
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (
                r#"{"op":"subscribe","id":"s1","layers":["cats"]}"#,
                "layers",
            ),
            (
                r#"{"op":"subscribe","id":"s1","layers":["salinity"],"bbox":[106,9,105,10]}"#,
                "bbox",
            ),
            (r#"{"op":"subscribe","layers":["salinity"]}"#, "id"),
            (
                r#"{"op":"resume","id":"s1","layers":["salinity"]}"#,
                "since",
            ),
            (r#"{"op":"dance"}"#, "op"),
            (
                r#"{"op":"replay","id":"r","layers":["salinity"],"from":"yesterday","to":"2026-03-02T00:00:00Z"}"#,
                "from",
            ),
            (
                r#"{"op":"replay","id":"r","layers":["salinity"],"from":"2026-03-01T00:00:00Z","to":"2026-03-02T00:00:00Z","speed":"fast"}"#,
                "speed",
            ),
            ("not json", ""),
        ];
        for (text, field) in cases {
            assert_eq!(parse(text).unwrap_err().field, field, "{text}");
        }
    }
}
