//! The province's single sign-on against a real OpenID provider (`oidc-provider` from npm):
//! its tokens are accepted per mapped role and carried into the audit log; a token from
//! another issuer, for another audience, expired, mapping to no role, or of an agency role
//! naming no agency is refused with a reason; a key rotation at the provider is picked up
//! without restarting ioc, and a rotated-out key is refused; while the provider is down, the
//! keys held keep working.

mod common;

use std::time::Duration;

use common::oidc::{config, Key, Provider, AUDIENCE};
use common::*;
use serde_json::{json, Value};

const A: Key = Key("a", "RS256");
const B: Key = Key("b", "ES256");

fn clients() -> Value {
    let c = |id: &str, claims: Value| json!({"client_id": id, "client_secret": format!("{id}-secret-0123456789"), "claims": claims});
    json!([
        c(
            "trung-tam-dieu-hanh",
            json!({"groups": ["staff", "ioc-operators"]})
        ),
        c("quan-tri-he-thong", json!({"groups": ["ioc-admins"]})),
        c(
            "so-tnmt",
            json!({"groups": ["ioc-agency"], "agency": "so-tnmt"})
        ),
        c("phong-ban-thieu", json!({"groups": ["ioc-agency"]})),
        c("email-portal", json!({"groups": ["staff", "mail-users"]})),
    ])
}

/// (status, body) of a GET with `token`.
async fn get(ioc: &Ioc, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = fetch(ioc, path, token).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Asserts `token` is refused (401) with a reason containing `why`.
async fn refused(ioc: &Ioc, token: &str, why: &str) {
    let (s, v) = get(ioc, "/api/v1/layers", token).await;
    assert_eq!(s, 401, "refused: {v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(why),
        "reason {reason:?} does not say {why:?}"
    );
}

async fn accepted(ioc: &Ioc, token: &str) {
    let (s, v) = get(ioc, "/api/v1/layers", token).await;
    assert_eq!(s, 200, "accepted: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_are_checked_mapped_audited_and_follow_key_rotation() {
    let mut idp = Provider::start(&[A], 600, clients(), json!([])).await;
    let other = Provider::start(&[Key("x", "RS256")], 600, clients(), json!([])).await;
    let dir = std::env::temp_dir().join(unique("oidc-ioc"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ioc.toml");
    std::fs::write(&cfg, config(&idp.issuer(), 10, 0)).unwrap();
    let env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__REPORT_EVERY_S".to_string(), "0".to_string()),
        ("IOC_DEMO__CAMERAS".to_string(), "false".to_string()),
        ("IOC_DEMO__BACKFILL_HOURS".to_string(), "0".to_string()),
    ];
    let mut ioc = Ioc::start(&["demo", "--config", cfg.to_str().unwrap()], &env);
    ioc.ready().await;

    // --- Mapped roles are accepted; the provider's subject is who the audit log names.
    let op = idp.client_token("trung-tam-dieu-hanh", AUDIENCE).await;
    accepted(&ioc, &op).await;
    let admin = idp.client_token("quan-tri-he-thong", AUDIENCE).await;
    let dept = idp.client_token("so-tnmt", AUDIENCE).await;
    accepted(&ioc, &dept).await;
    let zone = square_zone("Vùng đăng nhập một lần", 105.47, 9.78);
    let r = reqwest::Client::new()
        .post(ioc.url("/api/v1/zones"))
        .bearer_auth(&op)
        .json(&zone)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (s, log) = get(&ioc, "/api/v1/audit?action=zone.create", &admin).await;
    assert_eq!(s, 200, "{log}");
    let e = &log["entries"][0];
    assert_eq!(
        (&e["subject"], &e["role"], &e["result"]),
        (
            &json!("trung-tam-dieu-hanh"),
            &json!("operator"),
            &json!("allowed")
        ),
        "{log}"
    );
    // The refused read of the log by an operator says why, and an admin's token works.
    let (s, _) = get(&ioc, "/api/v1/audit", &op).await;
    assert_eq!(s, 403);

    // --- Refused, each with its reason.
    refused(
        &ioc,
        &idp.client_token("email-portal", AUDIENCE).await,
        "maps to no role",
    )
    .await;
    refused(
        &ioc,
        &idp.client_token("phong-ban-thieu", AUDIENCE).await,
        "needs the agency claim",
    )
    .await;
    refused(
        &ioc,
        &idp.client_token("trung-tam-dieu-hanh", "urn:ho-so-cong-viec")
            .await,
        "audience",
    )
    .await;
    refused(
        &ioc,
        &other.client_token("trung-tam-dieu-hanh", AUDIENCE).await,
        "another issuer",
    )
    .await;
    // Our own HS256 tokens still work beside the provider's (service accounts, devices).
    accepted(&ioc, &token(auth::Role::Operator)).await;

    // --- Rotation: the provider now signs with b (ES256) and still publishes a; tokens
    // live 3 s. ioc is not restarted.
    idp.restart(&[B, A], 3).await;
    let b_op = idp.client_token("trung-tam-dieu-hanh", AUDIENCE).await;
    let header = jsonwebtoken::decode_header(&b_op).unwrap();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (jsonwebtoken::Algorithm::ES256, Some("b"))
    );
    accepted(&ioc, &b_op).await;
    accepted(&ioc, &op).await; // a is still published: its tokens stand
    tokio::time::sleep(Duration::from_secs(5)).await;
    refused(&ioc, &b_op, "expired").await;

    // --- a is dropped: once ioc has fetched the keys again (every 10 s), its tokens are
    // refused while b's stand.
    idp.restart(&[B], 600).await;
    let b_op = idp.client_token("trung-tam-dieu-hanh", AUDIENCE).await;
    accepted(&ioc, &b_op).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (s, v) = get(&ioc, "/api/v1/layers", &op).await;
        if s == 401 {
            let reason = v["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("key"), "{reason}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a token of a rotated-out key still accepted after 40 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // --- The provider goes down: the keys held keep working, and ioc stays ready.
    idp.stop();
    tokio::time::sleep(Duration::from_secs(12)).await;
    accepted(&ioc, &b_op).await;
    let r = reqwest::get(ioc.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
