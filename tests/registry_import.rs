//! A province's own cameras through `ioc registry import`, against tansu, `ioc serve` and the
//! fixture RTSP server (password-protected). A camera sheet with one bad row publishes
//! nothing and says which line and field, without repeating the stream password; `--dry-run`
//! publishes nothing and points out a credential set the configuration lacks; the corrected
//! sheet puts the cameras on the map while `serve` runs, the one streaming goes online with a
//! snapshot, the other is reported offline; `ioc registry export` gives a sheet that imports
//! again; an admin adds and removes one over HTTP with the same checks, audited; `ioc
//! registry remove` takes a camera off the map and out of reach.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use auth::Role;
use common::*;
use fixtures::rtsp::{RtspFixture, RtspFixtureConfig};

const STREAM_PASSWORD: &str = "Nvr-Pass-5b7e02";
const PASTED_PASSWORD: &str = "Pasted-Secret-88";

fn ioc_registry(args: &[&str], env: &[(String, String)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ioc"))
        .arg("registry")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running `ioc registry`")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sheet(dir: &Path, name: &str, rows: &[String]) -> String {
    let path = dir.join(name);
    let mut body = "id,name,lon,lat,agency,purpose,group,url,transport,credentials\n".to_string();
    for r in rows {
        body.push_str(r);
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// Camera entity ids on the operator's cameras layer.
async fn on_map(ioc: &Ioc) -> Vec<String> {
    let v = get_json(
        ioc,
        "/api/v1/layers/cameras/features?limit=1000",
        Role::Operator,
    )
    .await;
    v["features"]
        .as_array()
        .expect("a feature collection")
        .iter()
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

async fn wait_until(what: &str, wait: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + wait;
    while !ok().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until `camera` is on the operator's map (`present`) or off it.
async fn wait_on_map(ioc: &Ioc, camera: &str, present: bool) {
    let entity = format!("camera:{camera}");
    let what = format!("{entity} {} the map", if present { "on" } else { "off" });
    wait_until(&what, Duration::from_secs(20), async || {
        on_map(ioc).await.contains(&entity) == present
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_imports_its_cameras_checked_whole_and_removes_them() {
    let rtsp = RtspFixture::start(RtspFixtureConfig {
        credentials: Some(("nvr".into(), STREAM_PASSWORD.into())),
        ..Default::default()
    })
    .expect("the fixture RTSP server (GStreamer RTSP server, x264)");
    rtsp.mount("kenh-101").unwrap();
    let base = rtsp.base_url();
    let mut env = isolated_env("registry");
    for (k, v) in [
        ("IOC_VIDEO__CREDENTIALS__NVR_VT__USER", "nvr".to_string()),
        (
            "IOC_VIDEO__CREDENTIALS__NVR_VT__PASSWORD",
            STREAM_PASSWORD.into(),
        ),
        ("IOC_VIDEO__SNAPSHOT_EVERY_S", "1".into()),
        ("IOC_VIDEO__OFFLINE_AFTER_S", "3".into()),
    ] {
        env.push((k.into(), v));
    }
    let dir = std::env::temp_dir().join(unique("ioc-registry"));
    std::fs::create_dir_all(&dir).unwrap();
    let good = [
        format!("vt-cam-101,\"Ngã tư Trần Hưng Đạo, Vị Thanh\",105.470,9.784,hg-ca,public_order,,{base}/kenh-101,tcp,nvr_vt"),
        format!("vt-cam-102,Cầu Cái Nhúc,105.472,9.790,,traffic,,{base}/kenh-102,,nvr_vt"),
    ];

    // --- A sheet with a password pasted into one URL: refused whole, the row named.
    let bad = sheet(
        &dir,
        "bad.csv",
        &[
            good[0].clone(),
            format!("vt-cam-103,Chợ Vị Thanh,105.471,9.781,hg-ca,public_order,,rtsp://admin:{PASTED_PASSWORD}@10.1.2.3/ch1,,"),
        ],
    );
    let out = ioc_registry(&["import", &bad], &env);
    let said = text(&out);
    assert!(!out.status.success(), "a bad sheet was accepted: {said}");
    assert!(
        said.contains(
            "bad.csv line 3 (camera:vt-cam-103): stream.url: must not carry a user or password"
        ),
        "{said}"
    );
    assert!(said.contains("nothing was published"), "{said}");
    assert!(
        !said.contains(PASTED_PASSWORD),
        "the password was repeated: {said}"
    );

    // --- A dry run checks and publishes nothing.
    let dry = sheet(
        &dir,
        "dry.csv",
        &[format!(
            "vt-cam-104,Bến xe Vị Thanh,105.468,9.786,,traffic,,{base}/kenh-104,,nvr_typo"
        )],
    );
    let out = ioc_registry(&["import", "--dry-run", &dry], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("checked 1 camera: no problems; nothing published"));
    assert!(
        text(&out).contains("camera vt-cam-104 names credential set `nvr_typo`"),
        "a credential set the workers lack goes unmentioned: {}",
        text(&out)
    );

    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let before = on_map(&ioc).await;
    assert!(
        !before.iter().any(|id| id.starts_with("camera:vt-cam-")),
        "a refused or dry-run sheet reached the map: {before:?}"
    );

    // --- The corrected sheet, imported while `serve` runs.
    let fixed = sheet(&dir, "cameras.csv", &good);
    let out = ioc_registry(&["import", &fixed], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("published 2 camera"), "{}", text(&out));
    wait_on_map(&ioc, "vt-cam-101", true).await;
    wait_on_map(&ioc, "vt-cam-102", true).await;
    let ids = on_map(&ioc).await;
    assert!(
        !ids.contains(&"camera:vt-cam-104".to_string()),
        "the dry run was published"
    );
    let cam = get_json(&ioc, "/api/v1/cameras/vt-cam-101", Role::Police).await;
    assert_eq!(
        cam["properties"]["name"], "Ngã tư Trần Hưng Đạo, Vị Thanh",
        "{cam}"
    );
    assert_eq!(
        cam["properties"]["group"], "police",
        "the group follows the purpose: {cam}"
    );

    // The streaming camera goes online and gives a snapshot; the other is offline.
    let police = token(Role::Police);
    wait_until(
        "a snapshot of the imported camera",
        Duration::from_secs(20),
        async || {
            fetch(&ioc, "/api/v1/cameras/vt-cam-101/snapshot.jpg", &police)
                .await
                .0
                == 200
        },
    )
    .await;
    wait_until(
        "the camera without a stream offline",
        Duration::from_secs(20),
        async || {
            let c = get_json(&ioc, "/api/v1/cameras/vt-cam-102", Role::Operator).await;
            c["properties"]["state"] == "offline"
        },
    )
    .await;
    let shown =
        serde_json::to_string(&get_json(&ioc, "/api/v1/cameras/vt-cam-101", Role::Operator).await)
            .unwrap();
    assert!(
        !shown.contains("rtsp://") && !shown.contains(STREAM_PASSWORD),
        "{shown}"
    );

    // --- Export, for editing in a spreadsheet: the same cameras, importable again.
    let exported = dir.join("exported.csv").display().to_string();
    let out = ioc_registry(&["export", &exported], &env);
    assert!(out.status.success(), "{}", text(&out));
    let sheet = std::fs::read_to_string(&exported).unwrap();
    assert!(sheet.starts_with("id,name,lon,lat,agency,purpose,group,url,transport,credentials\n"));
    assert!(
        sheet.contains(
            "vt-cam-101,\"Ngã tư Trần Hưng Đạo, Vị Thanh\",105.47,9.784,hg-ca,public_order,police,"
        ),
        "{sheet}"
    );
    assert!(sheet.contains("vt-cam-102,"), "{sheet}");
    assert!(
        !sheet.contains("vt-cam-103") && !sheet.contains("vt-cam-104"),
        "{sheet}"
    );
    let out = ioc_registry(&["import", "--dry-run", &exported], &env);
    assert!(
        out.status.success(),
        "the export does not import: {}",
        text(&out)
    );
    assert!(text(&out).contains("checked 2 camera"), "{}", text(&out));

    // --- An admin over HTTP: the same checks, audited, on the map while serve runs.
    let client = reqwest::Client::new();
    let put = |role: Role, body: serde_json::Value| {
        client
            .put(ioc.url("/api/v1/cameras/vt-cam-105"))
            .bearer_auth(token(role))
            .json(&body)
            .send()
    };
    let camera = |url: String| {
        serde_json::json!({
            "name": "Cổng Công an tỉnh", "position": {"lon": 105.469, "lat": 9.785},
            "agency": "hg-ca", "purpose": "public_order", "group": "police",
            "stream": {"url": url, "credentials": "nvr_vt"}
        })
    };
    let r = put(Role::Operator, camera(format!("{base}/kenh-101")))
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an operator registered a camera");
    let r = put(
        Role::Admin,
        camera(format!("rtsp://admin:{PASTED_PASSWORD}@10.1.2.3/ch1")),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("\"field\":\"stream.url\""), "{body}");
    assert!(
        !body.contains(PASTED_PASSWORD),
        "the password was repeated: {body}"
    );
    let r = put(Role::Admin, camera(format!("{base}/kenh-101")))
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    wait_on_map(&ioc, "vt-cam-105", true).await;
    let delete = |id: &str| {
        client
            .delete(ioc.url(&format!("/api/v1/cameras/{id}")))
            .bearer_auth(token(Role::Admin))
            .send()
    };
    assert_eq!(delete("vt-cam-105").await.unwrap().status(), 202);
    wait_on_map(&ioc, "vt-cam-105", false).await;
    assert_eq!(delete("no-such-cam").await.unwrap().status(), 404);
    let log = get_json(&ioc, "/api/v1/audit?target=camera:vt-cam-105", Role::Admin).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"registry.upsert") && actions.contains(&"registry.remove"),
        "the admin's changes are not in the audit log: {log}"
    );

    // --- Removal: off the map, and its images out of reach like any unknown camera.
    let out = ioc_registry(&["remove", "camera:vt-cam-101"], &env);
    assert!(out.status.success(), "{}", text(&out));
    wait_on_map(&ioc, "vt-cam-101", false).await;
    let (status, _, _) = fetch(&ioc, "/api/v1/cameras/vt-cam-101/snapshot.jpg", &police).await;
    assert_eq!(status, 403, "a removed camera answers like an unknown one");
    let out = ioc_registry(&["remove", "vt-cam-102"], &env);
    assert!(
        !out.status.success(),
        "an entity without its kind was accepted"
    );
    assert!(text(&out).contains("kind:id"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
