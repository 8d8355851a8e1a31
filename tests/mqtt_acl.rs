//! The Mosquitto set-up of `ops/mosquitto` holds: per-device credentials, and a device may
//! publish only to its own station's topic, so a leaked device password cannot speak for
//! another station. A real Mosquitto is started with that ACL file (and a password file made
//! by `mosquitto_passwd`), `ioc demo` reads it with the ingest account.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn passwd(file: &std::path::Path, user: &str, pw: &str, create: bool) {
    let mut c = Command::new("mosquitto_passwd");
    if create {
        c.arg("-c");
    }
    let ok = c
        .arg("-b")
        .arg(file)
        .arg(user)
        .arg(pw)
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto; ops/test.sh installs it)");
    assert!(ok.success());
}

/// Mosquitto with ops/mosquitto's listener settings and ACL, on a port of its own.
fn broker() -> (Broker, u16) {
    let dir = std::env::temp_dir().join(unique("mqtt-acl"));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("ioc.passwd");
    passwd(&pw, "ioc-ingest", "ingest-pw", true);
    passwd(&pw, "hg-vt-sal-01", "device-pw", false);
    let acl = dir.join("ioc.acl");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/ops/mosquitto/ioc.acl"),
        &acl,
    )
    .unwrap();
    let port = free_port();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ops/mosquitto/mosquitto.conf"
    ))
    .unwrap();
    let conf: String = shipped
        .lines()
        .map(|l| match l.split_whitespace().next() {
            Some("listener") => format!("listener {port} 127.0.0.1"),
            Some("password_file") => format!("password_file {}", pw.display()),
            Some("acl_file") => format!("acl_file {}", acl.display()),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf_path = dir.join("mosquitto.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (Debian package mosquitto; ops/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Broker(child), port)
}

/// Connects as `user`; `Err` with the broker's refusal.
async fn client(port: u16, user: Option<(&str, &str)>) -> Result<AsyncClient, String> {
    let mut opts = MqttOptions::new(unique("dev"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    if let Some((u, p)) = user {
        opts.set_credentials(u, p);
    }
    let (c, mut events) = AsyncClient::new(opts, 10);
    let first = tokio::time::timeout(Duration::from_secs(5), events.poll()).await;
    match first {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
            tokio::spawn(async move { while events.poll().await.is_ok() {} });
            Ok(c)
        }
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn a_device_may_publish_only_for_its_own_station() {
    let (_broker, port) = broker();
    let env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__REPORT_EVERY_S".to_string(), "0".to_string()),
        ("IOC_DEMO__CAMERAS".to_string(), "false".to_string()),
        ("IOC_DEMO__INTERVAL_S".to_string(), "3600".to_string()),
        ("IOC_DEMO__BACKFILL_HOURS".to_string(), "0".to_string()),
        (
            "IOC_INGEST__MQTT__URL".to_string(),
            format!("mqtt://127.0.0.1:{port}"),
        ),
        (
            "IOC_INGEST__MQTT__TOPIC".to_string(),
            "ioc/sensors/+/readings".to_string(),
        ),
        ("IOC_INGEST__MQTT__CLIENT_ID".to_string(), unique("ingest")),
        (
            "IOC_INGEST__MQTT__USERNAME".to_string(),
            "ioc-ingest".to_string(),
        ),
        (
            "IOC_INGEST__MQTT__PASSWORD".to_string(),
            "ingest-pw".to_string(),
        ),
    ];
    let mut ioc = Ioc::start(&["demo"], &env);
    ioc.ready().await;
    // No anonymous clients, no wrong passwords.
    assert!(
        client(port, None).await.is_err(),
        "an anonymous client connected"
    );
    assert!(client(port, Some(("hg-vt-sal-01", "guess"))).await.is_err());

    let device = client(port, Some(("hg-vt-sal-01", "device-pw")))
        .await
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    let reading =
        |v: f64| json!({"parameter": "salinity", "ts": now, "value": v, "unit": "‰"}).to_string();
    // For another province's station: the broker drops it.
    device
        .publish(
            "ioc/sensors/tg-vam-kenh-sal/readings",
            QoS::AtLeastOnce,
            false,
            reading(35.0),
        )
        .await
        .unwrap();
    // For its own: it reaches the map.
    device
        .publish(
            "ioc/sensors/hg-vt-sal-01/readings",
            QoS::AtLeastOnce,
            false,
            reading(2.5),
        )
        .await
        .unwrap();
    let v = wait_for_salinity(&ioc, "station:hg-vt-sal-01", 2.5, Duration::from_secs(20))
        .await
        .expect("the device's own reading arrives");
    assert_ne!(
        latest_salinity(&v, "station:tg-vam-kenh-sal"),
        Some(json!(35.0)),
        "a device's password spoke for another station"
    );
}
