//! The leaders' indicators end to end over the real broker: a department pushes its
//! figures as JSON, as a DHIS2 data value set and as a CSV sheet; they reach a leader's
//! websocket and the dashboard answer, rolled up to the province; a correction keeps its
//! revision; another department's indicator is refused with 403 and a malformed sheet with
//! every bad row named, neither writing anything; a missed target raises one alert to the
//! owning department; an explanation is asked for and answered; the history store keeps
//! every revision, target and explanation; salinity readings become the derived warning
//! days and 4‰ reach; a restart loses nothing (the daily tallies come back from the topic).

mod common;

use std::time::Duration;

use common::postgres::PrivatePostgres;
use common::*;
use model::indicator::{Frequency, Period};
use serde_json::{json, Value};

const TOURISM: &str = "hg-svhttdl";

async fn post(ioc: &Ioc, path: &str, token: &str, ctype: &str, body: String) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(ioc.url(path))
        .bearer_auth(token)
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post_salinity(ioc: &Ioc, station: &str, value: f64) {
    let r = reqwest::Client::new()
        .post(ioc.url("/ingest/v1/readings"))
        .bearer_auth(token(auth::Role::Sensor))
        .json(&json!({"station": station, "parameter": "salinity",
                      "ts": chrono::Utc::now().to_rfc3339(), "value": value, "unit": "‰"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

async fn get(ioc: &Ioc, path: &str, token: &str) -> Value {
    let r = reqwest::Client::new()
        .get(ioc.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.json().await.unwrap()
}

/// Polls `path` until `pred` holds of its answer.
async fn until(ioc: &Ioc, path: &str, token: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = get(ioc, path, token).await;
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never became as expected: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn figures_are_pushed_rolled_up_judged_explained_and_survive_a_restart() {
    let pg = PrivatePostgres::start();
    let mut env = isolated_env("indicators");
    env.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    env.push(("IOC_HISTORY__GROUP".into(), unique("hist")));
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let today = model::indicator::period::vietnam_date(chrono::Utc::now());
    let month = Period::containing(today, Frequency::Month, Default::default()).prev();
    let quarter = Period::containing(today, Frequency::Quarter, Default::default());
    let department = token_with("tourism-portal", auth::Role::Agency, Some(TOURISM), &[]);
    let health = token_with("health-officer", auth::Role::Agency, Some("hg-syt"), &[]);
    let leader = token_with("chu-tich", auth::Role::Leader, None, &[]);
    let admin = token(auth::Role::Admin);

    // A leader watches the province's tourism figures.
    let mut ws = ws_connect(&ioc, &leader).await;
    ws_send(
        &mut ws,
        &json!({"op": "subscribe", "id": "t", "layers": ["indicators"],
                "filter": {"unit": "hg", "sector": "tourism"}}),
    )
    .await;
    let snap = next_op(&mut ws, "snapshot", Duration::from_secs(30))
        .await
        .expect("a snapshot");
    assert_eq!(
        snap["features"]["features"].as_array().map(Vec::len),
        Some(0)
    );

    // --- JSON: every district's visitor arrivals for last month.
    let values: Vec<Value> = HG_DISTRICTS
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"indicator": "dl-luotkhach", "unit": d, "period": month.to_string(), "value": 8000 + 100 * i}))
        .collect();
    let (s, b) = post(
        &ioc,
        "/ingest/v1/indicators",
        &department,
        "application/json",
        json!(values).to_string(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["accepted"], 8);
    let total: f64 = (0..8).map(|i| 8000.0 + 100.0 * i as f64).sum();
    let province = wait_for_entity(
        &mut ws,
        "series:dl-luotkhach@hg",
        Duration::from_secs(30),
        |f| f["properties"]["latest"]["completeness"] == 1.0,
    )
    .await
    .expect("the province's arrivals, rolled up, on the leader's websocket");
    assert_eq!(province["properties"]["latest"]["value"], total);
    assert_eq!(province["properties"]["latest"]["origin"], "rolled_up");
    assert_eq!(
        province["properties"]["latest"]["period"],
        month.to_string()
    );

    // --- CSV: a correction of Vị Thanh's figure keeps the revision.
    let sheet = format!(
        "indicator,unit,period,value,note\ndl-luotkhach,hg-vi-thanh,{month},8250,Bổ sung số liệu lễ hội\n"
    );
    let (s, b) = post(
        &ioc,
        "/ingest/v1/indicators",
        &department,
        "text/csv",
        sheet.clone(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let vt = wait_for_entity(
        &mut ws,
        "series:dl-luotkhach@hg-vi-thanh",
        Duration::from_secs(30),
        |f| f["properties"]["latest"]["value"] == 8250.0,
    )
    .await
    .expect("the corrected figure");
    let revisions = vt["properties"]["latest"]["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(revisions[1]["previous"], 8000.0);
    assert_eq!(revisions[1]["note"], "Bổ sung số liệu lễ hội");
    assert!(revisions[1]["by"]
        .as_str()
        .unwrap()
        .contains("tourism-portal"));
    // The same sheet again changes nothing.
    let (s, _) = post(
        &ioc,
        "/ingest/v1/indicators",
        &department,
        "text/csv",
        sheet,
    )
    .await;
    assert_eq!(s, 202);

    // --- DHIS2's data value set shape, values as strings.
    let set = json!({"period": month.to_string(), "dataValues": [
        {"dataElement": "dl-khach-qt", "orgUnit": "hg-vi-thanh", "value": "420", "comment": "Khách Hàn Quốc tăng"},
        {"dataElement": "dl-khach-qt", "orgUnit": "hg-nga-bay", "value": "180"}
    ]});
    let (s, b) = post(
        &ioc,
        "/ingest/v1/indicators",
        &department,
        "application/json",
        set.to_string(),
    )
    .await;
    assert_eq!(s, 202, "{b}");

    // --- Another department's indicator: 403, nothing written.
    let other = json!([{"indicator": "dl-doanhthu", "unit": "hg-vi-thanh", "period": month.to_string(), "value": 5}]);
    let (s, b) = post(
        &ioc,
        "/ingest/v1/indicators",
        &health,
        "application/json",
        other.to_string(),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["accepted"], 0);
    assert_eq!(b["rejected"][0]["forbidden"], true);

    // --- A malformed sheet: every bad row named, nothing written (not even its good row).
    let bad = format!(
        "indicator,unit,period,value\n\
         dl-doanhthu,hg-vi-thanh,{month},61\n\
         dl-doanhthu,hg-vi-thanh,{quarter},61\n\
         dl-doanhthu,hg-nowhere,{month},61\n\
         dl-doanhthu,hg-nga-bay,{month},\"6,5\"\n"
    );
    let (s, b) = post(&ioc, "/ingest/v1/indicators", &department, "text/csv", bad).await;
    assert_eq!(s, 400, "{b}");
    let lines: Vec<(u64, &str)> = b["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["errors"][0]["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, [(3, "period"), (4, "unit"), (5, "value")]);
    assert_eq!(b["field"], "values[1].period");

    // --- A target the province misses: one alert, to the tourism department.
    let (s, b) = post(
        &ioc,
        "/api/v1/indicators/dl-luotkhach/targets",
        &admin,
        "application/json",
        json!({"unit": "hg", "period": month.to_string(), "value": 100000, "watch_margin": 1000})
            .to_string(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let alerts = until(&ioc, "/api/v1/alerts", &leader, |v| {
        v["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["rule"] == "indicator_off_target"))
    })
    .await;
    let off: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "indicator_off_target")
        .collect();
    assert_eq!(off.len(), 1, "{off:?}");
    assert_eq!(off[0]["entity"], "series:dl-luotkhach@hg");
    assert_eq!(off[0]["agency"], TOURISM);
    // A target set by anyone but an admin is refused.
    let (s, _) = post(
        &ioc,
        "/api/v1/indicators/dl-luotkhach/targets",
        &leader,
        "application/json",
        json!({"unit": "hg", "period": month.to_string(), "value": 1}).to_string(),
    )
    .await;
    assert_eq!(s, 403);

    // A body that is not JSON is named, in the API's one error shape.
    let (s, b) = post(
        &ioc,
        "/api/v1/indicators/dl-luotkhach/explanations",
        &leader,
        "application/json",
        "{not json".into(),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("body")), "{b}");

    // --- An explanation asked for by the leader and answered by the department.
    let ask = json!({"unit": "hg", "period": month.to_string(), "note": "Đề nghị giải trình vì sao lượt khách thấp"});
    let (s, b) = post(
        &ioc,
        "/api/v1/indicators/dl-luotkhach/explanations",
        &leader,
        "application/json",
        ask.to_string(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    // The department is asked: an alert addressed to it until it answers.
    let asked = until(&ioc, "/api/v1/alerts", &leader, |v| {
        v["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["rule"] == "indicator_explanation" && x["state"] != "cleared")
        })
    })
    .await;
    let ask_alert = asked["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "indicator_explanation")
        .unwrap()
        .clone();
    assert_eq!(ask_alert["agency"], TOURISM);
    assert_eq!(ask_alert["entity"], "series:dl-luotkhach@hg");
    let answer = json!({"unit": "hg", "period": month.to_string(), "note": "Mưa lớn kéo dài, các lễ hội dời sang tháng sau"});
    let (s, b) = post(
        &ioc,
        "/api/v1/indicators/dl-luotkhach/explanations",
        &department,
        "application/json",
        answer.to_string(),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let (s, _) = post(
        &ioc,
        "/api/v1/indicators/dl-luotkhach/explanations",
        &health,
        "application/json",
        answer.to_string(),
    )
    .await;
    assert_eq!(s, 403, "another department cannot answer");
    let path = "/api/v1/indicators/dl-luotkhach?unit=hg";
    let one = until(&ioc, path, &leader, |v| {
        v["figures"]["explanations"][month.to_string()]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    })
    .await;
    let steps: Vec<&str> = one["figures"]["explanations"][month.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["request", "answer"]);
    // Answered: the alert clears.
    until(&ioc, "/api/v1/alerts", &leader, |v| {
        v["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .filter(|x| x["id"] == ask_alert["id"])
                .all(|x| x["state"] == "cleared")
        })
    })
    .await;
    assert_eq!(one["children"].as_array().unwrap().len(), 8, "{one}");
    assert_eq!(one["figures"]["status"], "missed");

    // --- The dashboard has it all in one answer.
    let dash = get(&ioc, "/api/v1/dashboard?unit=hg", &leader).await;
    let tourism = dash["sectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sector"] == "tourism")
        .expect("a tourism tile");
    let arrivals = tourism["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "dl-luotkhach")
        .unwrap();
    assert_eq!(arrivals["latest"]["value"], total + 250.0);
    assert_eq!(arrivals["status"], "missed");
    assert!(dash["attention"]["missed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["entity"] == "series:dl-luotkhach@hg"));
    // The health department reads only its own indicators; police none.
    let theirs = get(&ioc, "/api/v1/indicators", &health).await;
    assert!(theirs["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["agency"] == "hg-syt"));
    let r = reqwest::Client::new()
        .get(ioc.url("/api/v1/dashboard"))
        .bearer_auth(token(auth::Role::Police))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // --- The store keeps it all: every revision (the replayed sheet is none), the target,
    // both steps of the explanation.
    let hist = |unit: &str| format!("/api/v1/indicators/dl-luotkhach/history?unit={unit}");
    let vt = until(&ioc, &hist("hg-vi-thanh"), &leader, |v| {
        v["periods"][0]["value"] == 8250.0
    })
    .await;
    assert_eq!(vt["periods"][0]["period"], month.to_string());
    let revisions = vt["periods"][0]["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(revisions[1]["previous"], 8000.0);
    assert_eq!(revisions[1]["note"], "Bổ sung số liệu lễ hội");
    let hg = until(&ioc, &hist("hg"), &leader, |v| {
        v["periods"][0]["explanations"]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    })
    .await;
    assert_eq!(hg["periods"][0]["targets"][0]["value"], 100000.0, "{hg}");
    assert_eq!(hg["periods"][0]["explanations"][1]["step"], "answer");
    let r = reqwest::Client::new()
        .get(ioc.url(&hist("hg")))
        .bearer_auth(&health)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "another department's indicator is not there for it"
    );

    // --- Derived from the core's own streams: both Cái Lớn stations at 8‰ put the 4‰ line
    // at least at the inland one (km 55) and make today a warning day, for the province.
    post_salinity(&ioc, "hg-lm-sal-01", 8.0).await;
    post_salinity(&ioc, "hg-vt-sal-01", 8.0).await;
    let latest = |v: &Value| v["figures"]["latest"]["value"].as_f64();
    let reach_path = "/api/v1/indicators/mt-man-xamnhap-4?unit=hg";
    until(&ioc, reach_path, &leader, |v| latest(v) == Some(55.0)).await;
    let days_path = "/api/v1/indicators/mt-man-ngay-canhbao?unit=hg";
    until(&ioc, days_path, &leader, |v| latest(v) == Some(1.0)).await;

    // --- A restart loses nothing: the same figures, revisions and explanations.
    let before = get(&ioc, path, &leader).await;
    ioc.kill();
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let after = until(&ioc, path, &leader, |v| v["figures"] == before["figures"]).await;
    assert_eq!(after["children"], before["children"]);
    assert_eq!(
        get(&ioc, &hist("hg-vi-thanh"), &leader).await["periods"],
        vt["periods"]
    );
    // The day's tallies came back from ioc.tallies: the inland station falling to 2‰ pulls
    // the line back to km 50, but the day's farthest stays km 55.
    post_salinity(&ioc, "hg-vt-sal-01", 2.0).await;
    until(&ioc, "/api/v1/layers/rivers/features", &leader, |v| {
        v.to_string().contains("\"km\":50.0")
    })
    .await;
    // (The series would move in the same batch as the river: give it time to show.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reach = get(&ioc, reach_path, &leader).await;
    assert_eq!(latest(&reach), Some(55.0), "{reach}");
    let days = get(&ioc, days_path, &leader).await;
    assert_eq!(latest(&days), Some(1.0), "{days}");
}
