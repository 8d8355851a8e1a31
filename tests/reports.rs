//! Field reports end to end over the real broker (tansu) and a private PostgreSQL, against
//! `ioc serve`: Open311 create with form fields, read back in JSON and XML (and by the
//! `georeport` Open311 client from PyPI), the spec's errors and filters; routing; the life
//! with its role checks, conflicts, reopen and duplicates; a deadline passing raises overdue
//! and an alert; and a crash mid-life (SIGKILL) loses no report and no transition.

mod common;

use std::time::Duration;

use common::postgres::PrivatePostgres;
use common::*;
use serde_json::{json, Value};
use sqlx::Connection;

fn token_as(sub: &str, role: auth::Role, agency: Option<&str>) -> String {
    auth::Authenticator::new(SECRET.as_bytes()).unwrap().issue(
        sub,
        role,
        agency,
        chrono::Duration::hours(1),
    )
}

/// POSTs an Open311 form; (status, body text).
async fn create(ioc: &Ioc, token: &str, fields: &[(&str, &str)], format: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(ioc.url(&format!("/open311/v2/requests.{format}")))
        .bearer_auth(token)
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn create_ok(ioc: &Ioc, token: &str, fields: &[(&str, &str)]) -> String {
    let (status, body) = create(ioc, token, fields, "json").await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v[0]["service_request_id"].as_str().unwrap().to_string()
}

async fn get(ioc: &Ioc, path: &str, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(ioc.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn report(ioc: &Ioc, id: &str) -> Value {
    let (s, b) = get(
        ioc,
        &format!("/api/v1/reports/{id}"),
        &token(auth::Role::Operator),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// Vị Thanh centre (Hậu Giang), in the fixture unit hg-vi-thanh.
const VT: (&str, &str) = ("9.7841", "105.4701");

#[tokio::test]
async fn reports_are_taken_routed_worked_to_resolution_and_survive_a_crash() {
    let pg = PrivatePostgres::start();
    let dir = std::env::temp_dir().join(unique("reports-cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ioc.toml");
    // Waste reports are due at once, so the test sees one go overdue.
    std::fs::write(
        &cfg,
        "[[reports.routing.deadlines]]\nservice = \"env.waste\"\nhours = 0\n",
    )
    .unwrap();
    let mut env = isolated_env("reports");
    env.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    env.push(("IOC_HISTORY__GROUP".into(), unique("hist")));
    env.push(("IOC_CORE__RULES__TICK_MS".into(), "300".into()));
    let args = ["serve", "--config", cfg.to_str().unwrap()];
    let mut ioc = Ioc::start(&args, &env);
    ioc.ready().await;

    let citizen = token_as("citizen-an", auth::Role::Citizen, None);
    let other_citizen = token_as("citizen-binh", auth::Role::Citizen, None);
    let operator = token(auth::Role::Operator);

    // --- Create with form fields; Vietnamese sent decomposed (NFD) comes back composed.
    let nfd = "Đường Trần Hưng Đạo nga\u{0323}\u{0302}p sâu, xe máy chết máy";
    let nfc = "Đường Trần Hưng Đạo ngập sâu, xe máy chết máy";
    let id = create_ok(
        &ioc,
        &citizen,
        &[
            ("service_code", "infra.drainage_flooding"),
            ("lat", VT.0),
            ("long", VT.1),
            ("address_string", "Trần Hưng Đạo, phường 5, Vị Thanh"),
            ("description", nfd),
            ("attribute[water_depth_cm]", "40"),
            ("email", "an.nguyen@example.vn"),
            ("phone", "0292 3871 234"),
        ],
    )
    .await;
    // Read it back at once (the POST answered after the live state showed it).
    let (s, body) = get(&ioc, &format!("/open311/v2/requests/{id}.json"), &citizen).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let r = &v[0];
    assert_eq!(r["service_request_id"], id.as_str());
    assert_eq!(r["description"], nfc);
    assert_eq!(r["service_name"], "Thoát nước, ngập úng");
    assert_eq!(r["status"], "open");
    assert_eq!(
        r["agency_responsible"],
        "Phòng Quản lý đô thị thành phố Vị Thanh"
    );
    assert!(r["requested_datetime"]
        .as_str()
        .unwrap()
        .ends_with("+07:00"));
    assert!(
        !body.contains("example.vn") && !body.contains("3871"),
        "contact details stay private"
    );
    let (s, xml) = get(&ioc, &format!("/open311/v2/requests/{id}.xml"), &citizen).await;
    assert_eq!(s, 200);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(&format!("<service_request_id>{id}</service_request_id>")));
    assert!(xml.contains(&format!("<description>{nfc}</description>")));
    // The XML form of the POST answer too.
    let (s, created_xml) = create(
        &ioc,
        &citizen,
        &[
            ("service_code", "infra.lighting"),
            ("lat", VT.0),
            ("long", VT.1),
        ],
        "xml",
    )
    .await;
    assert_eq!(s, 201);
    assert!(
        created_xml.contains("<service_requests><request>")
            && created_xml.contains("<service_request_id>pa-"),
        "{created_xml}"
    );

    // --- The spec's errors: JSON/XML error lists with code and description.
    let (s, b) = create(
        &ioc,
        &citizen,
        &[("service_code", "nope"), ("lat", "91"), ("long", "105")],
        "json",
    )
    .await;
    assert_eq!(s, 400);
    let e: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(e[0]["code"], 400);
    assert!(
        e[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("service_code:"),
        "{b}"
    );
    assert!(
        e[1]["description"].as_str().unwrap().starts_with("lat:"),
        "{b}"
    );
    let (s, b) = create(&ioc, &citizen, &[("service_code", "env.waste")], "xml").await;
    assert_eq!(s, 400);
    assert!(
        b.contains("<errors><error><code>400</code><description>lat:"),
        "{b}"
    );
    let (s, _) = get(
        &ioc,
        "/open311/v2/requests/pa-20200101-nothere.json",
        &citizen,
    )
    .await;
    assert_eq!(s, 404);
    let r = reqwest::Client::new()
        .get(ioc.url("/open311/v2/requests.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = get(
        &ioc,
        "/open311/v2/requests.json",
        &token(auth::Role::Sensor),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = get(
        &ioc,
        "/open311/v2/requests.json?start_date=yesterday",
        &citizen,
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("start_date"), "{b}");
    let (s, b) = get(
        &ioc,
        "/open311/v2/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z",
        &citizen,
    )
    .await;
    assert_eq!(s, 400, "more than 90 days");
    assert!(b.contains("90 days"));

    // --- Routing: outside every unit goes to the operators' queue; public order to police,
    // visible to the police and the reporter, not to other citizens.
    let outside = create_ok(
        &ioc,
        &citizen,
        &[
            ("service_code", "infra.lighting"),
            ("lat", "9.0"),
            ("long", "104.0"),
        ],
    )
    .await;
    let o = report(&ioc, &outside).await;
    assert_eq!(o["state"], "received");
    assert_eq!(o["agency"], Value::Null);
    assert!(o["routing_rule"]
        .as_str()
        .unwrap()
        .contains("hàng đợi Trung tâm IOC"));
    let order = create_ok(
        &ioc,
        &citizen,
        &[
            ("service_code", "order.security"),
            ("lat", "10.385"),
            ("long", "105.437"),
            ("description", "Tụ tập gây rối lúc khuya"),
        ],
    )
    .await;
    let o = report(&ioc, &order).await;
    assert_eq!(o["agency"], "lx-ca");
    assert_eq!(o["units"][0], "lx-my-binh");
    let (s, _) = get(
        &ioc,
        &format!("/open311/v2/requests/{order}.json"),
        &other_citizen,
    )
    .await;
    assert_eq!(s, 404, "a police matter is not shown to other citizens");
    let (s, _) = get(
        &ioc,
        &format!("/open311/v2/requests/{order}.json"),
        &citizen,
    )
    .await;
    assert_eq!(s, 200, "the reporter sees their own");

    // --- Filters.
    let all: Value =
        serde_json::from_str(&get(&ioc, "/open311/v2/requests.json", &operator).await.1).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4);
    let f: Value = serde_json::from_str(
        &get(
            &ioc,
            "/open311/v2/requests.json?service_code=infra.lighting",
            &operator,
        )
        .await
        .1,
    )
    .unwrap();
    assert_eq!(f.as_array().unwrap().len(), 2);
    let f: Value = serde_json::from_str(
        &get(&ioc, "/open311/v2/requests.json?status=closed", &operator)
            .await
            .1,
    )
    .unwrap();
    assert_eq!(f.as_array().unwrap().len(), 0);
    let f: Value = serde_json::from_str(
        &get(
            &ioc,
            &format!("/open311/v2/requests.json?service_request_id={id},{outside}&status=closed"),
            &operator,
        )
        .await
        .1,
    )
    .unwrap();
    assert_eq!(
        f.as_array().unwrap().len(),
        2,
        "service_request_id overrides other filters"
    );

    // --- A real Open311 client (georeport from PyPI) reads the same service.
    let python = required_env(
        "IOC_TEST_PYTHON",
        "a Python with the georeport package (ops/test.sh makes one)",
    );
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/open311_client.py"
        ))
        .arg(ioc.url("/open311/v2"))
        .arg(&operator)
        .arg(&id)
        .arg(nfc)
        .output()
        .expect("running the Open311 client");
    assert!(
        out.status.success(),
        "georeport client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // --- Life: who may do what.
    let agency = token_as("qldt-1", auth::Role::Agency, Some("hg-vt-qldt"));
    let other_agency = token_as("ca-1", auth::Role::Agency, Some("hg-ca"));
    let (s, _) = report_step(
        &ioc,
        &id,
        &token(auth::Role::Leader),
        json!({"action": "start"}),
    )
    .await;
    assert_eq!(s, 403, "leaders watch, they do not work reports");
    let (s, _) = report_step(&ioc, &id, &other_agency, json!({"action": "start"})).await;
    assert_eq!(s, 403, "another agency");
    let (s, _) = report_step(&ioc, &id, &agency, json!({"action": "close"})).await;
    assert_eq!(s, 409, "closing an assigned report");
    let (s, b) = report_step(&ioc, &id, &agency, json!({"action": "resolve"})).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("result")), "{b}");
    let (s, b) = report_step(
        &ioc,
        &id,
        &agency,
        json!({"action": "start", "note": "Đã cử cán bộ"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "in_progress");
    // Two writers at once: exactly one wins.
    let (a, b2) = tokio::join!(
        report_step(
            &ioc,
            &id,
            &agency,
            json!({"action": "resolve", "result": "Đã nạo vét cống thoát nước"})
        ),
        report_step(
            &ioc,
            &id,
            &operator,
            json!({"action": "reject", "reason": "Trùng phản ánh"})
        )
    );
    let mut codes = [a.0, b2.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{a:?} {b2:?}");
    let now = report(&ioc, &id).await;
    let resolved = now["state"] == "resolved";
    // The crash: SIGKILL mid-life, then a restart from the topic and the store.
    let before = report(&ioc, &id).await["history"].clone();
    ioc.kill();
    let mut ioc = Ioc::start(&args, &env);
    ioc.ready().await;
    let after = report(&ioc, &id).await;
    assert_eq!(
        after["history"], before,
        "every transition survives the crash"
    );
    let open311: Value = serde_json::from_str(
        &get(&ioc, &format!("/open311/v2/requests/{id}.json"), &citizen)
            .await
            .1,
    )
    .unwrap();
    assert_eq!(open311[0]["status"], "closed");
    let notes = open311[0]["status_notes"].as_str().unwrap();
    assert!(
        notes.contains(if resolved {
            "Đã nạo vét cống thoát nước"
        } else {
            "Trùng phản ánh"
        }),
        "{notes}"
    );
    // Reopen: only by the reporter (or operators).
    let reopen = json!({"action": "reopen", "reason": "Mưa lại ngập như cũ"});
    let (s, _) = report_step(&ioc, &id, &other_citizen, reopen.clone()).await;
    assert_eq!(s, 403);
    let (s, b) = report_step(&ioc, &id, &citizen, reopen).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "assigned");
    assert_eq!(b["reopened"], 1);
    let (s, b) = report_step(
        &ioc,
        &id,
        &agency,
        json!({"action": "resolve", "result": "Đã lắp thêm cống"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = report_step(&ioc, &id, &operator, json!({"action": "close"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "closed");

    // --- Duplicates: the same category within ~30 m and a day are linked both ways.
    let dup_a = create_ok(
        &ioc,
        &citizen,
        &[
            ("service_code", "env.waste"),
            ("lat", "9.7850"),
            ("long", "105.4710"),
            ("description", "Rác bên bờ kênh"),
        ],
    )
    .await;
    let dup_b = create_ok(
        &ioc,
        &other_citizen,
        &[
            ("service_code", "env.waste"),
            ("lat", "9.7852"),
            ("long", "105.4711"),
            ("description", "Rác bốc mùi"),
        ],
    )
    .await;
    let a = report(&ioc, &dup_a).await;
    let b = report(&ioc, &dup_b).await;
    assert_eq!(b["duplicates"], json!([dup_a]));
    // The link back reaches a's record with the next state publish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut a = a;
    while a["duplicates"] != json!([dup_b]) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a = report(&ioc, &dup_a).await;
    }
    assert_eq!(a["duplicates"], json!([dup_b]));

    // --- Overdue: waste is due at once here; the report is flagged and an alert raised.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = get_json(
            &ioc,
            "/api/v1/alerts?rule=report_overdue",
            auth::Role::Operator,
        )
        .await;
        let found = alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["entity"] == format!("report:{dup_a}"));
        if found && report(&ioc, &dup_a).await["overdue"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no overdue alert for {dup_a}: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let waste_agency = report(&ioc, &dup_a).await["agency"]
        .as_str()
        .unwrap()
        .to_string();
    let wa = token_as("w", auth::Role::Agency, Some(&waste_agency));
    let (s, _) = report_step(
        &ioc,
        &dup_a,
        &wa,
        json!({"action": "resolve", "result": "Đã thu gom"}),
    )
    .await;
    assert_eq!(s, 200);
    let q = get_json(&ioc, "/api/v1/reports?state=overdue", auth::Role::Operator).await;
    assert!(q["reports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != dup_a.as_str()));
    // The agency's queue holds its own reports only.
    let r = reqwest::Client::new()
        .get(ioc.url("/api/v1/reports"))
        .bearer_auth(&agency)
        .send()
        .await
        .unwrap();
    let q: Value = r.json().await.unwrap();
    assert!(
        q["reports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["agency"] == "hg-vt-qldt"),
        "{q}"
    );

    // --- The store holds every event once, in life order.
    let mut db = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let want = report(&ioc, &id).await["seq"].as_i64().unwrap();
    loop {
        let seqs: Vec<(i32,)> =
            sqlx::query_as("SELECT seq FROM report_events WHERE report = $1 ORDER BY seq")
                .bind(&id)
                .fetch_all(&mut db)
                .await
                .unwrap();
        let seqs: Vec<i64> = seqs.into_iter().map(|s| i64::from(s.0)).collect();
        if seqs == (0..=want).collect::<Vec<_>>() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored seqs {seqs:?}, want 0..={want}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Unit counts reach the units layer (leaders' per-district view).
    let units = get_json(
        &ioc,
        "/api/v1/layers/units/features?limit=100",
        auth::Role::Leader,
    )
    .await;
    let vt = units["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "unit:hg-vi-thanh")
        .unwrap();
    assert!(
        vt["properties"]["reports"]["resolved"].as_i64().unwrap() >= 1,
        "{vt}"
    );
}
