//! The audit log over `ioc serve` on the real broker and PostgreSQL: every write endpoint
//! (zones, layouts and focus, cameras, indicator values, targets and explanations, reports
//! and their transitions, alert acknowledgements and clears) leaves exactly one entry with
//! who, role, what, target, from where and the result; a refused write leaves a refused
//! entry with the answer's status and reason; a write whose entry cannot be written is
//! answered 503 and takes no effect; the admin's CSV and JSON-lines exports round-trip to
//! the listing; the SOC copy (a JSON-lines file) holds the same entries.

mod common;

use std::time::Duration;

use auth::Role;
use common::postgres::PrivatePostgres;
use common::*;
use serde_json::{json, Value};
use sqlx::Connection;
use store::{AuditEntry, AuditResult, AuditRow};

const TOURISM: &str = "hg-svhttdl";

async fn send(
    ioc: &Ioc,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, ioc.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The log as the admin lists it, newest first (the listing's own `audit.read` entries
/// left out).
async fn log(ioc: &Ioc) -> Vec<AuditRow> {
    let (s, v) = send(
        ioc,
        reqwest::Method::GET,
        "/api/v1/audit?limit=1000",
        Some(&token(Role::Admin)),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let rows: Vec<AuditRow> = serde_json::from_value(v["entries"].clone()).unwrap();
    rows.into_iter()
        .filter(|r| r.entry.action != "audit.read")
        .collect()
}

/// The entries written since `before` (the newest id seen), oldest first.
async fn new_entries(ioc: &Ioc, before: i64) -> Vec<AuditEntry> {
    let mut rows: Vec<AuditRow> = log(ioc)
        .await
        .into_iter()
        .filter(|r| r.id > before)
        .collect();
    rows.reverse();
    rows.into_iter().map(|r| r.entry).collect()
}

async fn newest(ioc: &Ioc) -> i64 {
    log(ioc).await.first().map(|r| r.id).unwrap_or(0)
}

/// Sends one write and checks it left exactly one entry, as expected; the answer.
#[allow(clippy::too_many_arguments)]
async fn one_entry(
    ioc: &Ioc,
    (method, path): (reqwest::Method, &str),
    token: Option<(&str, &str, &str)>,
    body: Option<Value>,
    status: u16,
    (action, target, result): (&str, &str, AuditResult),
) -> Value {
    let before = newest(ioc).await;
    let (s, v) = send(ioc, method.clone(), path, token.map(|t| t.0), body).await;
    assert_eq!(s, status, "{method} {path}: {v}");
    let entries = new_entries(ioc, before).await;
    assert_eq!(
        entries.len(),
        1,
        "{method} {path} left {} entries: {entries:#?}",
        entries.len()
    );
    let e = &entries[0];
    let (subject, role) = token.map(|t| (t.1, t.2)).unwrap_or(("-", "-"));
    assert_eq!(
        (
            e.action.as_str(),
            e.result,
            e.subject.as_str(),
            e.role.as_str()
        ),
        (action, result, subject, role),
        "{method} {path}: {e:#?}"
    );
    assert!(
        e.target.starts_with(target),
        "{method} {path}: target {} is not {target}…",
        e.target
    );
    assert_eq!(e.remote.as_deref(), Some("127.0.0.1"), "from where");
    if result == AuditResult::Refused {
        assert_eq!(e.status, Some(status));
        let reason = e.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with(&status.to_string()),
            "the reason says why: {reason}"
        );
        if let Some(r) = v["reason"].as_str() {
            assert!(
                reason.contains(r),
                "{reason} does not carry the answer's reason {r}"
            );
        }
    } else {
        assert_eq!(
            (e.status, e.reason.as_deref()),
            (None, None),
            "written before the answer: {e:#?}"
        );
    }
    v
}

async fn wait_until_ok(ioc: &Ioc, path: &str, role: Role, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = send(ioc, reqwest::Method::GET, path, Some(&token(role)), None).await;
        if s == 200 && ok(&v) {
            return v;
        }
        let v = v.to_string();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: {s} {}",
            &v[..v.len().min(600)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_leaves_one_entry_before_its_effect_and_the_log_exports_whole() {
    use reqwest::Method;
    use AuditResult::*;
    let pg = PrivatePostgres::start();
    let dir = std::env::temp_dir().join(unique("audit-ship"));
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = dir.join("audit.jsonl");
    let mut env = isolated_env("audit");
    env.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    env.push(("IOC_HISTORY__GROUP".into(), unique("hist")));
    env.push(("IOC_VIDEO__ENABLED".into(), "false".into()));
    env.push(("IOC_REGISTRY__FIXTURE_INDICATORS".into(), "true".into()));
    env.push((
        "IOC_AUDIT__SHIP".into(),
        format!("file:{}", shipped.display()),
    ));
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    wait_until_ok(&ioc, "/api/v1/indicators", Role::Leader, |v| {
        v["indicators"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;

    let op = token_with("dieu-hanh-1", Role::Operator, None, &[]);
    let admin = token_with("quan-tri-1", Role::Admin, None, &[]);
    let leader = token_with("chu-tich", Role::Leader, None, &[]);
    let dept = token_with("tourism-portal", Role::Agency, Some(TOURISM), &[]);
    let citizen = token_with("cong-dan-7", Role::Citizen, None, &[]);
    let op_ = Some((op.as_str(), "dieu-hanh-1", "operator"));
    let admin_ = Some((admin.as_str(), "quan-tri-1", "admin"));
    let leader_ = Some((leader.as_str(), "chu-tich", "leader"));
    let dept_ = Some((dept.as_str(), "tourism-portal", "agency"));
    let citizen_ = Some((citizen.as_str(), "cong-dan-7", "citizen"));

    // --- Zones: refused three ways, then drawn and removed.
    let (x, y) = (105.47, 9.78);
    let square = json!({"type": "Feature", "properties": {"name": "Vùng kiểm toán"},
        "geometry": {"type": "Polygon", "coordinates": [[[x - 0.01, y - 0.01], [x + 0.01, y - 0.01], [x + 0.01, y + 0.01], [x - 0.01, y + 0.01], [x - 0.01, y - 0.01]]]}});
    let mut bowtie = square.clone();
    bowtie["geometry"]["coordinates"] = json!([[
        [x, y],
        [x + 0.1, y + 0.1],
        [x + 0.1, y],
        [x, y + 0.1],
        [x, y]
    ]]);
    let zones = (Method::POST, "/api/v1/zones");
    one_entry(
        &ioc,
        zones.clone(),
        None,
        Some(square.clone()),
        401,
        ("zone.create", "zone:", Refused),
    )
    .await;
    one_entry(
        &ioc,
        zones.clone(),
        leader_,
        Some(square.clone()),
        403,
        ("zone.create", "zone:", Refused),
    )
    .await;
    one_entry(
        &ioc,
        zones.clone(),
        op_,
        Some(bowtie),
        400,
        ("zone.create", "zone:", Refused),
    )
    .await;
    let z = one_entry(
        &ioc,
        zones.clone(),
        op_,
        Some(square.clone()),
        201,
        ("zone.create", "zone:", Allowed),
    )
    .await;
    let zone = z["id"].as_str().unwrap().to_string();
    let entries = log(&ioc).await;
    assert_eq!(
        entries[0].entry.target,
        format!("zone:{zone}"),
        "the new zone is named"
    );
    wait_until_ok(&ioc, "/api/v1/layers/zones/features", Role::Operator, |v| {
        v.to_string().contains(&zone)
    })
    .await;
    let path = format!("/api/v1/zones/{zone}");
    one_entry(
        &ioc,
        (Method::DELETE, &path),
        op_,
        None,
        202,
        ("zone.delete", &format!("zone:{zone}"), Allowed),
    )
    .await;

    // --- A wall layout: stored, focused (by operators only), released, deleted.
    let wall = json!({"name": "Tường kiểm toán", "screens": [{"name": "Bản đồ", "columns": 2, "rows": 1,
        "panels": [{"kind": "map", "at": [0, 0, 1, 1]}, {"kind": "clock", "at": [1, 0, 1, 1]}]}]});
    let lpath = "/api/v1/layouts/tuong-kiem-toan";
    let target = "layout:tuong-kiem-toan";
    one_entry(
        &ioc,
        (Method::PUT, lpath),
        op_,
        Some(wall.clone()),
        201,
        ("layout.edit", target, Allowed),
    )
    .await;
    wait_until_ok(&ioc, lpath, Role::Operator, |_| true).await;
    let fpath = format!("{lpath}/focus");
    let focus = json!({"lon": x, "lat": y, "label": "Sự cố"});
    one_entry(
        &ioc,
        (Method::POST, &fpath),
        admin_,
        Some(focus.clone()),
        403,
        ("wall.focus", target, Refused),
    )
    .await;
    one_entry(
        &ioc,
        (Method::POST, &fpath),
        op_,
        Some(focus),
        202,
        ("wall.focus", target, Allowed),
    )
    .await;
    one_entry(
        &ioc,
        (Method::DELETE, &fpath),
        op_,
        None,
        202,
        ("wall.release", target, Allowed),
    )
    .await;
    one_entry(
        &ioc,
        (Method::DELETE, lpath),
        admin_,
        None,
        202,
        ("layout.delete", target, Allowed),
    )
    .await;

    // --- A camera registered and removed by an admin, not by an operator.
    let cam = json!({"name": "Cổng kiểm toán", "position": {"lon": x, "lat": y}, "agency": "hg-ca",
        "purpose": "public_order", "group": "police", "stream": {"url": "rtsp://10.255.0.1/ch1"}});
    let cpath = "/api/v1/cameras/audit-cam-1";
    one_entry(
        &ioc,
        (Method::PUT, cpath),
        op_,
        Some(cam.clone()),
        403,
        ("registry.upsert", "camera:audit-cam-1", Refused),
    )
    .await;
    one_entry(
        &ioc,
        (Method::PUT, cpath),
        admin_,
        Some(cam),
        202,
        ("registry.upsert", "camera:audit-cam-1", Allowed),
    )
    .await;
    wait_until_ok(&ioc, cpath, Role::Admin, |_| true).await;
    one_entry(
        &ioc,
        (Method::DELETE, cpath),
        admin_,
        None,
        202,
        ("registry.remove", "camera:audit-cam-1", Allowed),
    )
    .await;

    // --- Indicators: values by the department, a target by the admin, an explanation asked.
    let month = chrono::Utc::now().format("%Y%m").to_string();
    let values = json!([{"indicator": "dl-luotkhach", "unit": HG_DISTRICTS[0], "period": month, "value": 8000}]);
    one_entry(
        &ioc,
        (Method::POST, "/ingest/v1/indicators"),
        dept_,
        Some(values),
        202,
        (
            "indicator.values",
            &format!("indicator:dl-luotkhach/{}", HG_DISTRICTS[0]),
            Allowed,
        ),
    )
    .await;
    let foreign = json!([{"indicator": "yt-tiemchung", "unit": HG_DISTRICTS[0], "period": month, "value": 1}]);
    one_entry(
        &ioc,
        (Method::POST, "/ingest/v1/indicators"),
        dept_,
        Some(foreign),
        403,
        ("indicator.values", "indicator:yt-tiemchung", Refused),
    )
    .await;
    let tpath = "/api/v1/indicators/dl-luotkhach/targets";
    let goal = json!({"unit": "hg", "period": month, "value": 100000});
    one_entry(
        &ioc,
        (Method::POST, tpath),
        leader_,
        Some(goal.clone()),
        403,
        ("indicator.target", "indicator:dl-luotkhach", Refused),
    )
    .await;
    one_entry(
        &ioc,
        (Method::POST, tpath),
        admin_,
        Some(goal),
        202,
        ("indicator.target", "indicator:dl-luotkhach/hg/", Allowed),
    )
    .await;
    let ask = json!({"unit": "hg", "period": month, "note": "Vì sao lượt khách giảm?"});
    one_entry(
        &ioc,
        (Method::POST, "/api/v1/indicators/dl-luotkhach/explanations"),
        leader_,
        Some(ask),
        202,
        (
            "indicator.explanation",
            "indicator:dl-luotkhach/hg/",
            Allowed,
        ),
    )
    .await;

    // --- The explanation asked raises an alert for the department: acknowledged, cleared.
    let asked = |a: &Value| a["rule"] == "indicator_explanation" && a["state"] == "raised";
    let alerts = wait_until_ok(&ioc, "/api/v1/alerts", Role::Operator, |v| {
        v["alerts"].as_array().is_some_and(|a| a.iter().any(asked))
    })
    .await;
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| asked(a))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = format!("/api/v1/alerts/{alert}/acknowledge");
    let target = format!("alert:{alert}");
    one_entry(
        &ioc,
        (Method::POST, &ack),
        leader_,
        Some(json!({})),
        403,
        ("alert.acknowledge", &target, Refused),
    )
    .await;
    one_entry(
        &ioc,
        (Method::POST, &ack),
        op_,
        Some(json!({"note": "đã nhận"})),
        202,
        ("alert.acknowledge", &target, Allowed),
    )
    .await;
    let clear = format!("/api/v1/alerts/{alert}/clear");
    one_entry(
        &ioc,
        (Method::POST, &clear),
        op_,
        Some(json!({})),
        202,
        ("alert.clear", &target, Allowed),
    )
    .await;

    // --- A citizen's report, and its routing by the control room.
    let before = newest(&ioc).await;
    let r = reqwest::Client::new()
        .post(ioc.url("/open311/v2/requests.json"))
        .bearer_auth(&citizen)
        .form(&[
            ("service_code", "infra.lighting"),
            ("lat", "9.0"),
            ("long", "104.0"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let report = r.json::<Value>().await.unwrap()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = new_entries(&ioc, before).await;
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(
        (
            e[0].action.as_str(),
            e[0].target.as_str(),
            e[0].subject.as_str(),
            e[0].result
        ),
        ("report.submit", "report:new", "cong-dan-7", Allowed)
    );
    wait_until_ok(
        &ioc,
        &format!("/api/v1/reports/{report}"),
        Role::Operator,
        |_| true,
    )
    .await;
    let step = format!("/api/v1/reports/{report}/transitions");
    let target = format!("report:{report}");
    let assign = json!({"action": "assign", "agency": "hg-ca"});
    one_entry(
        &ioc,
        (Method::POST, &step),
        citizen_,
        Some(assign.clone()),
        403,
        ("report.transition", &target, Refused),
    )
    .await;
    one_entry(
        &ioc,
        (Method::POST, &step),
        op_,
        Some(assign),
        200,
        ("report.transition", &target, Allowed),
    )
    .await;

    // --- A write whose entry cannot be written is refused and takes no effect.
    let mut db = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    sqlx::query("ALTER TABLE audit_log ADD CONSTRAINT audit_test_refuses_zones CHECK (action <> 'zone.create') NOT VALID")
        .execute(&mut db)
        .await
        .unwrap();
    let mut unlogged = square.clone();
    unlogged["properties"]["name"] = json!("Vùng không được ghi");
    let (s, v) = send(
        &ioc,
        Method::POST,
        "/api/v1/zones",
        Some(&op),
        Some(unlogged),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("audit_unavailable")),
        "{v}"
    );
    sqlx::query("ALTER TABLE audit_log DROP CONSTRAINT audit_test_refuses_zones")
        .execute(&mut db)
        .await
        .unwrap();
    // The zone that was drawn next is on the map; the unlogged one never is.
    let mut after = square.clone();
    after["properties"]["name"] = json!("Vùng sau sự cố");
    let (s, v) = send(&ioc, Method::POST, "/api/v1/zones", Some(&op), Some(after)).await;
    assert_eq!(s, 201, "{v}");
    let map = wait_until_ok(&ioc, "/api/v1/layers/zones/features", Role::Operator, |m| {
        m.to_string().contains("Vùng sau sự cố")
    })
    .await;
    assert!(
        !map.to_string().contains("Vùng không được ghi"),
        "a zone took effect without its entry"
    );

    // --- Reading the log is for admins, and is itself an entry.
    let (s, _) = send(&ioc, Method::GET, "/api/v1/audit", Some(&op), None).await;
    assert_eq!(s, 403);
    let (_, page) = send(
        &ioc,
        Method::GET,
        "/api/v1/audit?action=audit.read&limit=5",
        Some(&admin),
        None,
    )
    .await;
    let reads: Vec<AuditRow> = serde_json::from_value(page["entries"].clone()).unwrap();
    assert!(
        reads
            .iter()
            .any(|r| r.entry.subject == "dieu-hanh-1" && r.entry.result == Refused),
        "{page}"
    );
    let (_, refused) = send(
        &ioc,
        Method::GET,
        "/api/v1/audit?result=refused&action=zone.create",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        refused["entries"].as_array().unwrap().len(),
        3,
        "filters: {refused}"
    );

    // --- The export round-trips: CSV and JSON lines hold the listing's rows, exactly.
    let (_, listing) = send(
        &ioc,
        Method::GET,
        "/api/v1/audit?limit=1000",
        Some(&admin),
        None,
    )
    .await;
    let listed: Vec<AuditRow> = serde_json::from_value(listing["entries"].clone()).unwrap();
    let until = listed[0].id + 1;
    for (format, parse) in [
        (
            "csv",
            audit::export::from_csv
                as fn(&[u8]) -> Result<Vec<AuditRow>, audit::export::ExportError>,
        ),
        ("jsonl", audit::export::from_jsonl),
    ] {
        let r = reqwest::Client::new()
            .get(ioc.url(&format!("/api/v1/audit?format={format}&before={until}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let disposition = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            disposition.starts_with("attachment; filename=\"ioc-audit-"),
            "{disposition}"
        );
        let rows = parse(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(rows, listed, "the {format} export");
    }

    // --- The SOC's copy holds the same entries, in writing order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (_, all) = send(
        &ioc,
        Method::GET,
        "/api/v1/audit?limit=1000",
        Some(&admin),
        None,
    )
    .await;
    let mut stored: Vec<AuditRow> = serde_json::from_value(all["entries"].clone()).unwrap();
    stored.reverse();
    let key = |e: &AuditEntry| {
        (
            e.action.clone(),
            e.target.clone(),
            e.subject.clone(),
            e.result,
            e.status,
        )
    };
    let want: Vec<_> = stored.iter().map(|r| key(&r.entry)).collect();
    loop {
        let text = std::fs::read_to_string(&shipped).unwrap_or_default();
        let got: Vec<_> = text
            .lines()
            .map(|l| key(&serde_json::from_str::<AuditEntry>(l).unwrap()))
            .collect();
        if got.len() >= want.len() {
            assert_eq!(&got[..want.len()], &want[..], "the shipped copy");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} entries shipped",
            got.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ioc.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
