//! Alert life end to end over the real broker: a salinity reading crosses the warning level →
//! one alert reaches a websocket client → an operator acknowledges it through the API → it
//! clears when the value falls back; a silent station raises one stale alert, cleared when
//! its readings return. The alert history lands in PostgreSQL.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::postgres::PrivatePostgres;
use common::*;
use serde_json::{json, Value};
use sqlx::Connection;

async fn post_reading(ioc: &Ioc, station: &str, value: f64) {
    let r = reqwest::Client::new()
        .post(ioc.url("/ingest/v1/readings"))
        .bearer_auth(token(auth::Role::Sensor))
        .json(&json!({"station": station, "parameter": "salinity", "ts": Utc::now().to_rfc3339(), "value": value, "unit": "‰"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// The next `alert` message about `entity` under `rule` in `state`.
async fn alert_in(ws: &mut Ws, rule: &str, entity: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = next_op(ws, "alert", left)
            .await
            .unwrap_or_else(|| panic!("no {state} {rule} alert for {entity} within 30 s"));
        let p = &m["alert"]["properties"];
        if p["rule"] == rule && p["entity"] == entity && p["state"] == state {
            return p.clone();
        }
    }
}

async fn act(ioc: &Ioc, id: &str, what: &str, role: auth::Role, note: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(ioc.url(&format!("/api/v1/alerts/{id}/{what}")))
        .bearer_auth(token(role))
        .json(&json!({"note": note}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_alert_is_raised_acknowledged_and_cleared_and_a_silent_station_goes_stale() {
    let pg = PrivatePostgres::start();
    let mut env = isolated_env("alerts");
    env.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    env.push(("IOC_HISTORY__GROUP".into(), unique("hist")));
    env.push((
        "IOC_CORE__RULES__SALINITY_MIN_DURATION_S".into(),
        "0".into(),
    ));
    env.push(("IOC_CORE__RULES__TICK_MS".into(), "300".into()));
    // Stations report every 300 s: stale after 0.02 × 300 = 6 s of silence.
    env.push(("IOC_CORE__RULES__STALE_MULTIPLE".into(), "0.02".into()));
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let (mut ws, _) = ws_subscribe(&ioc, "alerts", &["alerts"], None).await;

    // An operator draws a zone around Vị Thanh; a leader may not, nor may anyone draw a bow-tie.
    let vt = fixtures::stations::stations()
        .into_iter()
        .find(|s| s.id.as_str() == "hg-vt-sal-01")
        .unwrap();
    let (x, y) = (vt.position.lon, vt.position.lat);
    let square = json!({"type": "Feature", "properties": {"name": "Vùng lúa Vị Thanh"},
        "geometry": {"type": "Polygon", "coordinates": [[[x - 0.05, y - 0.05], [x + 0.05, y - 0.05], [x + 0.05, y + 0.05], [x - 0.05, y + 0.05], [x - 0.05, y - 0.05]]]}});
    let post_zone = |role, body: Value| {
        let url = ioc.url("/api/v1/zones");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token(role))
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(post_zone(auth::Role::Leader, square.clone()).await.0, 403);
    let mut bowtie = square.clone();
    bowtie["geometry"]["coordinates"] = json!([[
        [x, y],
        [x + 0.1, y + 0.1],
        [x + 0.1, y],
        [x, y + 0.1],
        [x, y]
    ]]);
    let (status, body) = post_zone(auth::Role::Operator, bowtie).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("geometry")),
        "{body}"
    );
    let (status, body) = post_zone(auth::Role::Operator, square).await;
    assert_eq!(status, 201, "{body}");
    let zone = body["id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while get_json(&ioc, "/api/v1/layers/zones/features", auth::Role::Operator).await["features"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the zone never reached the zones layer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 5.2‰ at Vị Thanh: the warning level (4‰) is crossed.
    post_reading(&ioc, "hg-vt-sal-01", 5.2).await;
    let raised = alert_in(
        &mut ws,
        "salinity_warning",
        "station:hg-vt-sal-01",
        "raised",
    )
    .await;
    let id = raised["id"].as_str().unwrap().to_string();
    assert_eq!(raised["value"], 5.2);
    assert_eq!(
        raised["zones"],
        json!([zone]),
        "raised inside the zone: {raised}"
    );
    assert!(
        raised["detail"]
            .as_str()
            .unwrap()
            .contains("Vùng lúa Vị Thanh"),
        "{raised}"
    );
    let in_zone = get_json(
        &ioc,
        &format!("/api/v1/alerts?zone={zone}"),
        auth::Role::Operator,
    )
    .await;
    assert_eq!(in_zone["total"], 1, "{in_zone}");
    let by_zone = get_json(&ioc, "/api/v1/summary?by=zone", auth::Role::Leader).await;
    let z = by_zone["areas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == zone.as_str())
        .unwrap()
        .clone();
    let inside = fixtures::stations::stations()
        .iter()
        .filter(|s| (s.position.lon - x).abs() < 0.05 && (s.position.lat - y).abs() < 0.05)
        .count() as u64;
    assert_eq!(
        (z["stations"].as_u64(), z["active_alerts_total"].as_u64()),
        (Some(inside), Some(1)),
        "{z}"
    );
    assert_eq!(z["salinity_levels"]["warning"], 1, "{z}");
    let by_unit = get_json(&ioc, "/api/v1/summary?by=unit", auth::Role::Leader).await;
    let hg = by_unit["areas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "hg")
        .unwrap()
        .clone();
    assert!(hg["active_alerts_total"].as_u64().unwrap() >= 1, "{hg}");
    assert_eq!(hg["name"], "Tỉnh Hậu Giang");
    assert!(
        raised["title"].as_str().unwrap().contains("cảnh báo"),
        "{raised}"
    );
    // It stays one alert while the condition holds.
    for v in [5.4, 5.1, 4.6] {
        post_reading(&ioc, "hg-vt-sal-01", v).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = get_json(
        &ioc,
        "/api/v1/alerts?rule=salinity_warning",
        auth::Role::Leader,
    )
    .await;
    let ours: Vec<&Value> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["entity"] == "station:hg-vt-sal-01")
        .collect();
    assert_eq!(ours.len(), 1, "one alert per condition and station: {list}");

    // Leaders see alerts but do not acknowledge them; operators do, once.
    assert_eq!(
        act(&ioc, &id, "acknowledge", auth::Role::Leader, "")
            .await
            .0,
        403
    );
    let note = "Đã báo Sở Nông nghiệp và PTNT; hạn chế lấy nước tưới";
    let (status, body) = act(&ioc, &id, "acknowledge", auth::Role::Operator, note).await;
    assert_eq!(status, 202, "{body}");
    let acked = alert_in(
        &mut ws,
        "salinity_warning",
        "station:hg-vt-sal-01",
        "acknowledged",
    )
    .await;
    assert_eq!(
        (
            acked["id"].as_str(),
            acked["acked_by"].as_str(),
            acked["ack_note"].as_str()
        ),
        (Some(id.as_str()), Some("e2e"), Some(note))
    );
    let (again, body) = act(&ioc, &id, "acknowledge", auth::Role::Operator, "").await;
    assert_eq!(again, 409, "{body}");
    let (_, missing) = act(&ioc, "0000nope", "acknowledge", auth::Role::Operator, "").await;
    assert_eq!(missing["error"], "not_found");

    // The value falls back below 4‰ - 0.2 (hysteresis): cleared automatically.
    post_reading(&ioc, "hg-vt-sal-01", 0.6).await;
    let cleared = alert_in(
        &mut ws,
        "salinity_warning",
        "station:hg-vt-sal-01",
        "cleared",
    )
    .await;
    assert_eq!(
        (cleared["id"].as_str(), cleared["cleared_by"].as_str()),
        (Some(id.as_str()), Some("auto"))
    );
    assert_eq!(
        act(&ioc, &id, "clear", auth::Role::Operator, "").await.0,
        409
    );

    // Mỹ Tho never reported: after 6 s it is stale (one alert), and a reading clears it.
    // It may have gone stale while the steps above waited on the websocket for other alerts
    // (those waits pass over unrelated alert messages): look at the alerts list first.
    let listed = get_json(
        &ioc,
        "/api/v1/alerts?rule=stale&entity=station:tg-my-tho-sal",
        auth::Role::Operator,
    )
    .await;
    let stale = match listed["alerts"].as_array().and_then(|a| a.first()) {
        Some(a) => {
            assert_eq!(a["state"], "raised", "{a}");
            a.clone()
        }
        None => alert_in(&mut ws, "stale", "station:tg-my-tho-sal", "raised").await,
    };
    post_reading(&ioc, "tg-my-tho-sal", 0.3).await;
    let back = alert_in(&mut ws, "stale", "station:tg-my-tho-sal", "cleared").await;
    assert_eq!(back["id"], stale["id"]);

    // The history of the salinity alert: raised, acknowledged, cleared.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
        let events: Vec<String> =
            sqlx::query_scalar("SELECT event FROM alerts WHERE alert = $1 ORDER BY ts")
                .bind(&id)
                .fetch_all(&mut c)
                .await
                .unwrap_or_default();
        if events.len() >= 3 {
            assert_eq!(events, ["alert.raised", "alert.acked", "alert.cleared"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alert history incomplete: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
