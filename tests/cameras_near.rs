//! The cameras nearest an incident, over the real broker: `GET /api/v1/cameras/near` lists
//! only the cameras each caller may see (police, a school, an operator with and without the
//! school grant, a leader, an agency), nearest first, with distances right to the metre on
//! the fixture coordinates; bad parameters are refused naming the field.

mod common;

use auth::{Grant, Role};
use common::*;
use model::CameraGroup;
use serde_json::Value;

async fn near(ioc: &Ioc, token: &str, query: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(ioc.url(&format!("/api/v1/cameras/near?{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// (id, metres) of an answer, in its order.
fn listed(v: &Value) -> Vec<(String, i64)> {
    v["cameras"]
        .as_array()
        .unwrap_or_else(|| panic!("no camera list: {v}"))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["distance_m"].as_f64().unwrap() as i64,
            )
        })
        .collect()
}

/// The fixture cameras within `radius_m` of (lon, lat) whose group `sees` admits, nearest
/// first, at most `limit`, with their distances in whole metres.
fn expected(
    lon: f64,
    lat: f64,
    radius_m: f64,
    limit: usize,
    sees: impl Fn(&CameraGroup) -> bool,
) -> Vec<(String, i64)> {
    let mut all: Vec<(String, f64)> = fixtures::cameras::cameras("rtsp://127.0.0.1:1")
        .into_iter()
        .filter(|c| sees(&c.group))
        .map(|c| {
            let d = model::spatial::distance_m(lat, lon, c.position.lat, c.position.lon);
            (c.id.to_string(), d)
        })
        .filter(|(_, d)| *d <= radius_m)
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.into_iter()
        .take(limit)
        .map(|(id, d)| (id, d.round() as i64))
        .collect()
}

fn school(g: &CameraGroup) -> bool {
    matches!(g, CameraGroup::School(_))
}

#[tokio::test]
async fn each_caller_gets_only_the_cameras_it_may_see_nearest_first_to_the_metre() {
    let mut env = isolated_env("near");
    env.push(("IOC_REGISTRY__FIXTURE_CAMERAS".into(), "true".into()));
    // No stream behind them: the cameras are listed with their state, whatever it is.
    env.push((
        "IOC_REGISTRY__FIXTURE_RTSP".into(),
        "rtsp://127.0.0.1:1".into(),
    ));
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let cams = fixtures::cameras::cameras("rtsp://127.0.0.1:1");
    let op = token(Role::Operator);
    // Every fixture camera on the operator's map first (the replica has caught up).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let everywhere = "lon=105.6&lat=9.8&radius_m=100000&limit=16";
    while listed(&near(&ioc, &op, everywhere).await.1).len() < 16 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cameras never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // --- In a Hậu Giang town: police and traffic cameras, never a school's.
    let town = cams
        .iter()
        .find(|c| c.group == CameraGroup::Police)
        .expect("a police camera");
    let (lon, lat) = (town.position.lon, town.position.lat);
    let q = format!("lon={lon}&lat={lat}&radius_m=3000&limit=16");
    let not_school = expected(lon, lat, 3000.0, 16, |g| !school(g));
    assert!(not_school.len() >= 2, "{not_school:?}");
    assert_eq!(not_school[0], (town.id.to_string(), 0));
    let police = token_with("canh-sat-1", Role::Police, None, &[]);
    let leader = token_with("chu-tich", Role::Leader, None, &[]);
    for (who, t) in [("police", &police), ("operator", &op), ("leader", &leader)] {
        let (s, v) = near(&ioc, t, &q).await;
        assert_eq!(s, 200, "{who}: {v}");
        assert_eq!(listed(&v), not_school, "{who}");
    }
    let (_, v) = near(&ioc, &op, &q).await;
    let first = &v["cameras"][0];
    assert!(
        first["state"].is_string() && first["name"].is_string(),
        "{first}"
    );
    assert!(first.get("stream").is_none() && !v.to_string().contains("rtsp://"));
    // The leader sees the camera on the map but not its pictures without the grant.
    let (_, v) = near(&ioc, &leader, &q).await;
    assert_eq!(v["cameras"][0]["images_allowed"], false);
    // Limit: the nearest only.
    let (_, v) = near(
        &ioc,
        &police,
        &format!("lon={lon}&lat={lat}&radius_m=3000&limit=1"),
    )
    .await;
    assert_eq!(listed(&v), not_school[..1]);

    // --- At the Long Xuyên schools: school cameras only to their school and the granted.
    let (slon, slat) = (105.436, 10.386);
    let q = format!("lon={slon}&lat={slat}&radius_m=2000&limit=16");
    let granted = token_with("truc-ban", Role::Operator, None, &[Grant::SchoolCameras]);
    let all_schools = expected(slon, slat, 2000.0, 16, |_| true);
    assert!(
        all_schools
            .iter()
            .filter(|(id, _)| id.contains("-cam-"))
            .count()
            >= 6
    );
    let (_, v) = near(&ioc, &granted, &q).await;
    assert_eq!(
        listed(&v),
        all_schools,
        "an operator granted school cameras"
    );
    let site = "lx-mn-hoa-sen";
    let own = expected(
        slon,
        slat,
        2000.0,
        16,
        |g| matches!(g, CameraGroup::School(s) if s.as_str() == site),
    );
    assert_eq!(own.len(), 3);
    let school_token = token_with("hieu-truong", Role::School, Some(site), &[]);
    let (_, v) = near(&ioc, &school_token, &q).await;
    assert_eq!(listed(&v), own, "a school sees its own cameras only");
    let no_school = expected(slon, slat, 2000.0, 16, |g| !school(g));
    for (who, t) in [("police", &police), ("operator", &op), ("leader", &leader)] {
        let (_, v) = near(&ioc, t, &q).await;
        assert_eq!(listed(&v), no_school, "{who} near the schools");
    }
    // An agency sees no camera: the same answer as nowhere near one.
    let agency = token_with("so-tnmt", Role::Agency, Some("hg-stnmt"), &[]);
    let (s, v) = near(&ioc, &agency, &q).await;
    assert_eq!((s, listed(&v)), (200, vec![]));
    let (s, empty) = near(&ioc, &op, "lon=106.9&lat=20.9&radius_m=500").await;
    assert_eq!((s, listed(&empty)), (200, vec![]));
    assert_eq!(
        v.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        empty.as_object().map(|o| o.keys().collect::<Vec<_>>())
    );

    // --- Bad parameters, each named.
    for (query, field) in [
        ("lat=9.8", "lon"),
        ("lon=abc&lat=9.8", "lon"),
        ("lon=105.6&lat=95", "lat"),
        ("lon=105.6&lat=9.8&radius_m=-5", "radius_m"),
        ("lon=105.6&lat=9.8&limit=0", "limit"),
    ] {
        let (s, v) = near(&ioc, &op, query).await;
        assert_eq!((s, v["field"].as_str()), (400, Some(field)), "{query}: {v}");
    }
}
