//! `ioc` configuration: defaults, then a TOML file (`--config`), then `IOC_`-prefixed
//! environment variables (`IOC_BUS__KAFKA__BROKERS=...`, nested with `__`), then flags.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bus::{KafkaConfig, Topics};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ingest::http::HttpIngestConfig;
use ingest::mqtt::MqttConfig;
use ingest::poll::PollSource;
use serde::{Deserialize, Serialize};
use store::StoreConfig;
use stream_core::{CoreConfig, HistoryConfig};
use ui_feeds::FeedsConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// HTTP listen address (API, feeds, HTTP ingest, wall page).
    pub listen: String,
    /// The address clients reach this service at, e.g. `https://ioc.haugiang.gov.vn`
    /// (behind a reverse proxy): links the API builds start with it. Default: `http://` and
    /// the listen address.
    pub public_url: Option<String>,
    /// Limits of the HTTP listener: timeouts and connection caps.
    pub http: crate::http::HttpConfig,
    /// How often a subject or an address may write (429 past it).
    pub limits: auth::limits::LimitsConfig,
    pub bus: BusConfig,
    pub topics: Topics,
    pub auth: AuthConfig,
    pub core: CoreConfig,
    /// The history sink (part of the core role).
    pub history: HistoryConfig,
    /// The history database; without `database_url`, history is kept in bounded memory.
    pub store: StoreConfig,
    /// The audit log's copy for the SOC (its entries are kept by the store).
    pub audit: audit::AuditConfig,
    pub feeds: FeedsConfig,
    /// What the pages draw: the basemap under the unit polygons.
    pub ui: UiConfig,
    pub ingest: IngestConfig,
    /// Field-report intake: photo limits, routes and deadlines.
    pub reports: ingest::reports::ReportIntakeConfig,
    pub registry: RegistryConfig,
    /// Camera workers: liveness, snapshots, live view, stream credentials.
    pub video: media::VideoConfig,
    pub demo: DemoConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            http: Default::default(),
            limits: Default::default(),
            public_url: None,
            bus: BusConfig::default(),
            topics: Topics::default(),
            auth: AuthConfig::default(),
            core: CoreConfig::default(),
            history: HistoryConfig::default(),
            store: StoreConfig::default(),
            audit: Default::default(),
            feeds: FeedsConfig::default(),
            ui: UiConfig::default(),
            ingest: IngestConfig::default(),
            reports: Default::default(),
            registry: RegistryConfig::default(),
            video: media::VideoConfig::default(),
            demo: DemoConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Kafka,
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BusConfig {
    pub kind: BusKind,
    pub kafka: KafkaConfig,
    /// Partitions for keyed topics created by `ioc` (existing topics are left alone).
    pub partitions: i32,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Kafka,
            kafka: KafkaConfig::default(),
            partitions: 6,
        }
    }
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Token signing secret (at least 32 bytes). Prefer `secret_file` or `IOC_AUTH__SECRET`.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Lifetime of tokens printed by `ioc demo` and `ioc token`, hours.
    pub token_ttl_hours: Option<i64>,
    /// How long a media ticket from `POST /api/v1/cameras/{id}/tickets` may wait before its
    /// first use, seconds (default 60).
    pub media_ticket_ttl_s: Option<i64>,
    /// The province's single sign-on: its tokens are accepted besides this service's own.
    pub oidc: Option<auth::oidc::OidcConfig>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("token_ttl_hours", &self.token_ttl_hours)
            .field("media_ticket_ttl_s", &self.media_ticket_ttl_s)
            .field("oidc", &self.oidc)
            .finish()
    }
}

impl AuthConfig {
    /// The configured secret, if any.
    pub fn load_secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(s) = &self.secret {
            return Ok(Some(s.as_bytes().to_vec()));
        }
        if let Some(p) = &self.secret_file {
            let s = std::fs::read_to_string(p)
                .with_context(|| format!("reading auth.secret_file {}", p.display()))?;
            return Ok(Some(s.trim().as_bytes().to_vec()));
        }
        Ok(None)
    }

    pub fn ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(self.token_ttl_hours.unwrap_or(12))
    }

    pub fn media_ticket_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.media_ticket_ttl_s.unwrap_or(60).max(1))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    pub http: HttpIngestConfig,
    /// MQTT ingest, when configured.
    pub mqtt: Option<MqttConfig>,
    /// Stations polled over HTTP.
    pub poll: Vec<PollSource>,
    /// Systems whose indicator figures are polled over HTTP (JSON or CSV).
    pub indicator_polls: Vec<ingest::indicator_poll::IndicatorPoll>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Publish the fixture registry (three jurisdictions) at start-up.
    pub seed_fixtures: bool,
    /// Also publish the fixture cameras, streaming from the fixture RTSP server at
    /// `fixture_rtsp` (the demo starts one and sets both).
    pub fixture_cameras: bool,
    pub fixture_rtsp: String,
    /// Also put two years of the fixture indicators' values and the year's targets on
    /// `ioc.indicators`, once (when that topic is empty); the demo sets it.
    pub fixture_indicators: bool,
    /// The province's own registry files (cameras as .csv, any entries as .json/.jsonl),
    /// checked whole and published at start-up; one problem and the process does not start.
    /// `ioc registry import` publishes them without a restart.
    pub files: Vec<std::path::PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            seed_fixtures: false,
            fixture_cameras: false,
            fixture_rtsp: "rtsp://127.0.0.1:8554".into(),
            fixture_indicators: false,
            files: Vec::new(),
        }
    }
}

/// The pages' settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// `kind = "none"` (the default), `"xyz"` with `url` (and `attribution`, `max_zoom`), or
    /// `"mbtiles"` with `path`.
    pub basemap: ui_feeds::basemap::Basemap,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoConfig {
    /// Seconds between simulated readings of each fixture station.
    pub interval_s: f64,
    /// Hours of simulated history (every 5 minutes) fed in at start.
    pub backfill_hours: u32,
    /// Synthetic load stations (0 = none).
    pub load_stations: usize,
    /// Readings per second over the load stations.
    pub load_rate: f64,
    /// Seconds between simulated citizens' reports (0 = none).
    pub report_every_s: f64,
    /// Simulated minutes per real second for agencies handling reports.
    pub report_time_scale: f64,
    /// The fixture RTSP server for the demo's cameras (0 = any free port; `cameras = false`
    /// runs none).
    pub rtsp_port: u16,
    pub cameras: bool,
    /// Frames per second of the fixture cameras.
    pub camera_fps: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            interval_s: 3.0,
            backfill_hours: 72,
            load_stations: 0,
            load_rate: 0.0,
            report_every_s: 20.0,
            report_time_scale: 10.0,
            rtsp_port: 0,
            cameras: true,
            camera_fps: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,ingest=debug`.
    pub filter: String,
    /// One JSON object per line, for a SOC's collector.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
        }
    }
}

/// Loads configuration: defaults <- file <- environment.
/// `IOC_<KEY>_FILE=/path`: the key's value is the file's content (a secret from systemd's
/// `LoadCredential=`, a container secret), e.g. `IOC_STORE__DATABASE_URL_FILE`. Trailing
/// newlines are dropped; an unreadable file is an error naming its variable.
fn secret_files(
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, path) in vars {
        let Some(key) = name
            .strip_prefix("IOC_")
            .and_then(|k| k.strip_suffix("_FILE"))
            .filter(|k| !k.is_empty())
        else {
            continue;
        };
        let value =
            std::fs::read_to_string(&path).with_context(|| format!("{name}: reading {path}"))?;
        out.push((
            key.to_ascii_lowercase().replace("__", "."),
            value.trim_end_matches(['\n', '\r']).to_string(),
        ));
    }
    Ok(out)
}

pub fn load(file: Option<&Path>, base: Config) -> anyhow::Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(base));
    if let Some(f) = file {
        if !f.exists() {
            bail!("config file {} does not exist", f.display());
        }
        fig = fig.merge(Toml::file(f));
    }
    fig = fig.merge(Env::prefixed("IOC_").split("__"));
    for (key, value) in secret_files(std::env::vars())? {
        fig = fig.merge((key, value));
    }
    let cfg: Config = fig.extract().context("invalid configuration")?;
    if let Some(d) = cfg.store.raw_retention_days {
        // A replay from the bus must never re-insert readings the store already dropped.
        if i64::from(d) <= bus::READINGS_RETENTION_DAYS {
            bail!(
                "store.raw_retention_days = {d}: must exceed the readings topic's retention ({} days)",
                bus::READINGS_RETENTION_DAYS
            );
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example a province starts from loads, and says what the defaults are.
    #[test]
    fn the_example_configuration_loads_with_the_documented_limits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/ioc.example.toml");
        let cfg = load(Some(&path), Config::default()).unwrap();
        let d = Config::default();
        assert_eq!(cfg.http, d.http);
        assert_eq!(cfg.limits, d.limits);
        assert_eq!(cfg.feeds.max_outbox_bytes, d.feeds.max_outbox_bytes);
        assert_eq!(cfg.store.audit_retention_days, d.store.audit_retention_days);
        assert_eq!(
            cfg.core.rules.aqi_completeness,
            d.core.rules.aqi_completeness
        );
    }

    /// A secret can come from a file named by `IOC_<KEY>_FILE` (systemd credentials).
    #[test]
    fn secrets_come_from_files_named_in_the_environment() {
        let dir = std::env::temp_dir().join(format!("ioc-secret-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = dir.join("database-url");
        std::fs::write(&url, "postgres://ioc:s3cret@db/ioc\n").unwrap();
        let vars = vec![
            (
                "IOC_STORE__DATABASE_URL_FILE".to_string(),
                url.display().to_string(),
            ),
            ("IOC_CONFIG".to_string(), "/etc/ioc/ioc.toml".to_string()),
            ("PATH".to_string(), "/usr/bin".to_string()),
        ];
        let got = secret_files(vars.into_iter()).unwrap();
        assert_eq!(
            got,
            vec![(
                "store.database_url".to_string(),
                "postgres://ioc:s3cret@db/ioc".to_string()
            )]
        );
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(got[0].clone());
        let cfg: Config = fig.extract().unwrap();
        assert_eq!(
            cfg.store.database_url.map(|u| u.redacted()).as_deref(),
            Some("postgres://ioc:***@db/ioc")
        );
        let missing = vec![(
            "IOC_MQTT__PASSWORD_FILE".to_string(),
            "/nonexistent/x".to_string(),
        )];
        let e = secret_files(missing.into_iter()).unwrap_err().to_string();
        assert!(e.contains("IOC_MQTT__PASSWORD_FILE"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The example's commented single sign-on section, once uncommented, is a working one.
    #[test]
    fn the_example_single_sign_on_section_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/ioc.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("# [auth.oidc]\n").unwrap();
        let end = start + text[start..].find("# session_max_s").unwrap();
        let section: String = text[start..end + 40]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let tmp =
            std::env::temp_dir().join(format!("ioc-oidc-example-{}.toml", std::process::id()));
        std::fs::write(&tmp, section).unwrap();
        let cfg = load(Some(&tmp), Config::default()).unwrap();
        let oidc = cfg.auth.oidc.expect("the section");
        assert_eq!(oidc.check(), Ok(()));
        assert_eq!(oidc.claims.map.len(), 3);
        assert_eq!(oidc.login.expect("the login").client_id, "ioc-pages");
        let _ = std::fs::remove_file(&tmp);
    }
}
