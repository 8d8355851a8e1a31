//! `ioc`: the Intelligent Operations Center backend in one binary, one subcommand per role.
//! `ioc demo` runs everything in one process on an in-memory bus with simulated sensors;
//! `ioc serve` runs everything against Kafka (and MQTT when configured); `ioc ingest`,
//! `ioc core`, `ioc video` and `ioc api` run one role each for scale-out; `ioc migrate` sets up the history
//! database; `ioc registry` imports a province's cameras and stations.

mod citizens;
mod config;
mod http;
mod registry_cli;
mod roles;
#[cfg(feature = "video")]
mod rtsp_fixture;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{BusKind, Config};
use crate::roles::Roles;

#[derive(Parser)]
#[command(name = "ioc", version, about = "Intelligent Operations Center backend: sensors to a live map", long_about = None)]
struct Cli {
    /// TOML configuration file (see ops/ioc.example.toml). Environment variables IOC_* override it.
    #[arg(long, short, global = true, env = "IOC_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address (overrides `listen`).
    #[arg(long, global = true)]
    listen: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process with no outside services: in-memory bus, fixture registry
    /// (Hậu Giang, Tiền Giang, Long Xuyên), simulated sensors, wall page on http://127.0.0.1:8080/.
    /// Prints one access token per role.
    Demo {
        /// Seconds between simulated readings of each station.
        #[arg(long)]
        interval: Option<f64>,
        /// Add N synthetic stations (benchmark load mode).
        #[arg(long)]
        load_stations: Option<usize>,
        /// Readings per second over the synthetic stations.
        #[arg(long)]
        load_rate: Option<f64>,
    },
    /// Every role in one process against Kafka (and MQTT/poll sources when configured).
    Serve,
    /// Sensor ingest only: MQTT, HTTP push (/ingest/v1/readings), HTTP poll -> Kafka.
    Ingest,
    /// Stream core only: Kafka -> live state -> ioc.state. Scale out with disjoint
    /// `core.partitions` per instance, or `core.assignment = "group"` on Apache Kafka.
    Core,
    /// Read side only: REST API, websocket feeds and wall page, from a replica of ioc.state.
    /// Camera images come from the `ioc video` processes listed in `video.workers`.
    Api,
    /// Camera workers only: RTSP cameras of this shard (`video.shard` of `video.shards`) ->
    /// ioc.cameras, and their images to API processes holding a media ticket.
    Video,
    /// Applies the history store's migrations (store.database_url) and exits. `ioc serve`,
    /// `core` and `api` also apply them on start.
    Migrate,
    /// Prints a signed access token for a role (uses the configured auth secret).
    Token {
        /// operator, police, leader, agency, admin, sensor, citizen or school
        #[arg(long)]
        role: String,
        /// Who the token is for (required: the subject is what audit rows and report
        /// ownership name, so two people must never share one).
        #[arg(long)]
        sub: String,
        /// Agency id, for agency users; school id, for school users.
        #[arg(long)]
        agency: Option<String>,
        /// Rights beyond the role: camera_images (leaders), school_cameras (operators).
        #[arg(long)]
        grant: Vec<String>,
        /// For sensor tokens: a station the device may report for (repeat for several;
        /// without any, a sensor may report for the stations of its --agency).
        #[arg(long)]
        station: Vec<String>,
    },
    /// Prints the effective configuration as JSON (secrets redacted) and exits.
    Config,
    /// The province's own inventory on the registry topic: `import` camera sheets and
    /// registry files (checked whole), `remove` entities.
    #[command(subcommand)]
    Registry(registry_cli::RegistryCommand),
    /// Serves test cameras from the fixture RTSP server (one pre-encoded clip), controlled
    /// on stdin: `stop|stall|resume <mount>`, `resolution <mount> <w> <h>`.
    #[cfg(feature = "video")]
    RtspFixture(rtsp_fixture::FixtureArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    #[cfg(feature = "video")]
    if let Command::RtspFixture(args) = cli.command {
        return rtsp_fixture::run(args);
    }
    let mut base = Config::default();
    if matches!(cli.command, Command::Demo { .. }) {
        base.bus.kind = BusKind::Memory;
        base.registry.seed_fixtures = true;
    }
    let mut cfg = config::load(cli.config.as_deref(), base)?;
    if let Some(l) = cli.listen {
        cfg.listen = l;
    }
    roles::init_logging(&cfg.log);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Demo {
                interval,
                load_stations,
                load_rate,
            } => {
                if let Some(i) = interval {
                    cfg.demo.interval_s = i;
                }
                if let Some(n) = load_stations {
                    cfg.demo.load_stations = n;
                }
                if let Some(r) = load_rate {
                    cfg.demo.load_rate = r;
                }
                roles::run(cfg, Roles::demo()).await
            }
            Command::Serve => roles::run(cfg, Roles::all()).await,
            Command::Ingest => roles::run(cfg, Roles::one(roles::ProcessRole::Ingest)).await,
            Command::Core => roles::run(cfg, Roles::one(roles::ProcessRole::Core)).await,
            Command::Api => roles::run(cfg, Roles::one(roles::ProcessRole::Api)).await,
            Command::Video => roles::run(cfg, Roles::one(roles::ProcessRole::Video)).await,
            Command::Migrate => roles::migrate(&cfg).await,
            Command::Token {
                role,
                sub,
                agency,
                grant,
                station,
            } => {
                let role: auth::Role = role.parse().map_err(anyhow::Error::msg)?;
                anyhow::ensure!(
                    !sub.trim().is_empty(),
                    "--sub must name who the token is for"
                );
                for s in &station {
                    model::LocalId::parse("station", s)
                        .map_err(|e| anyhow::anyhow!("--station: {e}"))?;
                }
                let grants = grant
                    .iter()
                    .map(|g| g.parse::<auth::Grant>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                let secret = cfg.auth.load_secret()?.context(
                    "no auth secret configured (auth.secret, auth.secret_file or IOC_AUTH__SECRET)",
                )?;
                let a = auth::Authenticator::new(&secret)?;
                let now = chrono::Utc::now().timestamp();
                let claims = auth::Claims {
                    sub,
                    role,
                    agency,
                    grants,
                    stations: station,
                    iat: now,
                    exp: now + cfg.auth.ttl().num_seconds(),
                };
                println!("{}", a.sign(&claims));
                Ok(())
            }
            Command::Config => {
                let mut shown = cfg.clone();
                shown.auth.secret = shown.auth.secret.map(|_| "<redacted>".into());
                if let Some(m) = shown.ingest.mqtt.as_mut() {
                    m.password = m.password.as_ref().map(|_| "<redacted>".into());
                }
                shown.store.database_url = shown
                    .store
                    .database_url
                    .map(|u| store::DatabaseUrl::new(u.redacted()));
                shown.video = shown.video.redacted();
                for p in &mut shown.ingest.poll {
                    p.url = ingest::poll::redact_url(&p.url);
                    p.bearer_token = p.bearer_token.as_ref().map(|_| "<redacted>".into());
                }
                for p in &mut shown.ingest.indicator_polls {
                    p.url = ingest::poll::redact_url(&p.url);
                    p.bearer_token = p.bearer_token.as_ref().map(|_| "<redacted>".into());
                }
                println!("{}", as_json(&shown)?);
                Ok(())
            }
            Command::Registry(c) => registry_cli::run(&cfg, c).await,
            #[cfg(feature = "video")]
            Command::RtspFixture(_) => unreachable!("handled before the runtime starts"),
        }
    })
}

fn as_json(cfg: &Config) -> anyhow::Result<String> {
    let v = serde_json::to_value(cfg)?;
    Ok(serde_json::to_string_pretty(&v)?)
}
