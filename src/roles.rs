//! Wires the roles together: builds the bus, seeds the registry, spawns stream-core, the
//! replica, ingest sources and simulators, and serves HTTP. Any role's task ending with an
//! error stops the process (non-zero exit), so a supervisor restarts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use auth::{Authenticator, Role};
use axum::Router;
use bus::{Bus, KafkaBus, MemoryBus};
use chrono::Utc;
use ingest::{RegistryView, SensorIngest};
use metrics_exporter_prometheus::PrometheusBuilder;
use replica::Replica;
use serde_json::json;
use store::{History, MemoryHistory, PgStore};
use stream_core::{HistoryStart, HistoryStatus};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::config::{BusKind, Config, LogConfig};

#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub ingest: bool,
    pub core: bool,
    pub api: bool,
    /// Camera workers (`[video]`) and their media endpoint for API processes.
    pub video: bool,
    /// Simulated sensors and demo start-up banner.
    pub simulate: bool,
}

impl Roles {
    pub fn none() -> Self {
        Self {
            ingest: false,
            core: false,
            api: false,
            video: false,
            simulate: false,
        }
    }
    pub fn all() -> Self {
        Self {
            ingest: true,
            core: true,
            api: true,
            video: true,
            simulate: false,
        }
    }
    pub fn demo() -> Self {
        Self {
            simulate: true,
            ..Self::all()
        }
    }
    /// One role alone, as `ioc ingest|core|api|video` runs it.
    pub fn one(role: ProcessRole) -> Self {
        let mut r = Self::none();
        match role {
            ProcessRole::Ingest => r.ingest = true,
            ProcessRole::Core => r.core = true,
            ProcessRole::Api => r.api = true,
            ProcessRole::Video => r.video = true,
        }
        r
    }
}

/// A role a process can run (not a caller's role, which is `auth::Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRole {
    Ingest,
    Core,
    Api,
    Video,
}

/// What the roles of a process add up to: their tasks, their routes and their readiness
/// checks. Each role adds its own ([`core_role`], [`ingest_role`], [`video_role`],
/// [`api_role`]).
struct Parts {
    tasks: Tasks,
    app: Router,
    checks: Vec<map_api::Check>,
}

impl Parts {
    fn spawn<F>(&mut self, name: &'static str, fut: F)
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        spawn(&mut self.tasks, name, fut);
    }

    fn check(&mut self, name: &str, f: impl Fn() -> serde_json::Value + Send + Sync + 'static) {
        self.checks.push((name.to_string(), Arc::new(f)));
    }

    fn route(&mut self, routes: Router) {
        self.app = std::mem::replace(&mut self.app, Router::new()).merge(routes);
    }
}

/// What every role is built from.
struct Shared {
    cfg: Config,
    roles: Roles,
    bus: Arc<dyn Bus>,
    auth: Arc<Authenticator>,
    /// "memory" or "kafka".
    mode: String,
    history: Option<Arc<dyn History>>,
    /// Writes the audit log (to `history`, which must keep one for writes to be taken).
    auditor: Arc<audit::Auditor>,
    core_status: Arc<stream_core::CoreStatus>,
    /// The MBTiles basemap, opened when `ui.basemap` is one.
    tiles: Option<ui_feeds::basemap::Tiles>,
}

pub fn init_logging(cfg: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.filter));
    // Colours only for a person at a terminal: the journal and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if cfg.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

type Tasks = JoinSet<(&'static str, anyhow::Result<()>)>;

fn spawn<F>(tasks: &mut Tasks, name: &'static str, fut: F)
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    tasks.spawn(async move { (name, fut.await) });
}

fn build_bus(cfg: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(match cfg.bus.kind {
        BusKind::Memory => Arc::new(MemoryBus::default()),
        BusKind::Kafka => {
            Arc::new(KafkaBus::connect(cfg.bus.kafka.clone()).context("connecting to Kafka")?)
        }
    })
}

fn authenticator(cfg: &Config, demo: bool) -> anyhow::Result<Arc<Authenticator>> {
    let secret = match cfg.auth.load_secret()? {
        Some(s) => s,
        None if demo => {
            // A fresh secret per demo run: tokens from an earlier run stop working.
            let mut s = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut s);
            s.to_vec()
        }
        None => bail!("no auth secret configured: set auth.secret_file, auth.secret or IOC_AUTH__SECRET (32+ bytes)"),
    };
    let own = Authenticator::new(&secret).context("auth secret")?;
    let Some(oidc) = cfg.auth.oidc.clone() else {
        return Ok(Arc::new(own));
    };
    let verifier = Arc::new(auth::oidc::OidcVerifier::new(oidc).map_err(anyhow::Error::msg)?);
    // The keys are fetched now and kept fresh for the process's life.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let v = verifier.clone();
        rt.spawn(async move { v.keep_fresh().await });
    }
    info!(issuer = %verifier.issuer(), "single sign-on tokens accepted");
    Ok(Arc::new(own.with_oidc(verifier)))
}

/// The history store of this process, and its writer where this process runs the core:
/// PostgreSQL when `store.database_url` is set; bounded memory when it is not and the core
/// and the API both run here (the demo, or `serve` without a database); none otherwise (one
/// process cannot read another's memory).
fn history_backend(
    cfg: &Config,
    roles: Roles,
    parts: &mut Parts,
    bus: &Arc<dyn Bus>,
) -> anyhow::Result<Option<Arc<dyn History>>> {
    let pg = match &cfg.store.database_url {
        Some(_) => Some(Arc::new(
            PgStore::open(&cfg.store).context("opening the history store")?,
        )),
        None => None,
    };
    let history: Arc<dyn History> = match &pg {
        Some(p) => p.clone(),
        // Memory serves only the API of this same process.
        None if roles.core && roles.api => Arc::new(MemoryHistory::new(cfg.store.memory_readings)),
        None => {
            info!("no store.database_url: this process keeps no history");
            return Ok(None);
        }
    };
    if roles.core {
        let status = Arc::new(HistoryStatus::default());
        status.waiting("starting");
        let s = status.clone();
        parts.check("history", move || s.report());
        let mut hcfg = cfg.history.clone();
        // Several core instances split the partitions; each writes the history of its own.
        if hcfg.partitions.is_none() {
            hcfg.partitions = cfg.core.partitions.clone();
        }
        let (bus, topics, h) = (bus.clone(), cfg.topics.clone(), history.clone());
        parts.spawn("history", async move {
            let start = match pg {
                Some(p) => {
                    p.prepare_with_retry(|e| status.waiting(&e.to_string()))
                        .await
                        .context("setting up the history store")?;
                    HistoryStart::Committed
                }
                None => HistoryStart::Oldest,
            };
            stream_core::run_history(bus, topics, hcfg, h, start, status, std::future::pending())
                .await
                .map_err(Into::into)
        });
    } else if let Some(p) = pg {
        // Read-only use (API): set up in the background; queries answer 503 until then.
        let ready = p.clone();
        parts.check(
            "history",
            move || json!({"ready": ready.is_prepared(), "backend": ready.describe()}),
        );
        tokio::spawn(async move {
            if let Err(e) = p.prepare_with_retry(|_| {}).await {
                error!(error = %e, "history store cannot be used");
            }
        });
    }
    Ok(Some(history))
}

/// `ioc migrate`: applies the migrations, reports the layout, exits.
pub async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    if cfg.store.database_url.is_none() {
        bail!("store.database_url is not set (IOC_STORE__DATABASE_URL)");
    }
    let pg = PgStore::open(&cfg.store)?;
    let flavor = tokio::time::timeout(Duration::from_secs(60), pg.prepare_with_retry(|_| {}))
        .await
        .context("the database did not answer within 60 s")??;
    println!("history store ready: {:?}: {}", flavor, pg.describe());
    Ok(())
}

/// The demo's cameras: a fixture RTSP server with one mount per fixture camera, behind a
/// password made for this run (the video workers get it as the `fixture` credential set).
#[cfg(feature = "video")]
fn start_demo_cameras(cfg: &mut Config) -> anyhow::Result<fixtures::rtsp::RtspFixture> {
    let password = format!("{:032x}", rand::random::<u128>());
    let server = fixtures::rtsp::RtspFixture::start(fixtures::rtsp::RtspFixtureConfig {
        port: cfg.demo.rtsp_port,
        fps: cfg.demo.camera_fps.max(1),
        credentials: Some(("ioc-demo".into(), password.clone())),
        ..Default::default()
    })
    .context("starting the fixture RTSP server for the demo cameras")?;
    for c in fixtures::cameras::cameras(&server.base_url()) {
        server.mount(c.id.as_str())?;
    }
    cfg.registry.fixture_cameras = true;
    cfg.registry.fixture_rtsp = server.base_url();
    cfg.video.credentials.insert(
        fixtures::cameras::CREDENTIALS.into(),
        media::Credential {
            user: "ioc-demo".into(),
            password,
        },
    );
    info!(url = %server.base_url(), "fixture RTSP server for the demo cameras");
    Ok(server)
}

pub async fn run(cfg: Config, roles: Roles) -> anyhow::Result<()> {
    #[cfg(feature = "video")]
    let mut cfg = cfg;
    // Kept alive for the process's life.
    #[cfg(feature = "video")]
    let _demo_cameras = match roles.simulate && cfg.demo.cameras && cfg.video.enabled {
        true => Some(start_demo_cameras(&mut cfg)?),
        false => None,
    };
    let recorder = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let bus = build_bus(&cfg)?;
    let mode = bus.name().to_string();
    info!(bus = %mode, ingest = roles.ingest, core = roles.core, api = roles.api, video = roles.video, "ioc starting");
    let auth = authenticator(&cfg, roles.simulate)?;
    let limiter = Arc::new(auth::limits::SharedLimiter::new(&cfg.limits));

    // Topics and registry first: every role depends on them.
    let mut backoff = Duration::from_millis(500);
    loop {
        match bus
            .ensure_topics(&cfg.topics.specs(cfg.bus.partitions))
            .await
        {
            Ok(()) => break,
            Err(e) if backoff < Duration::from_secs(30) => {
                warn!(error = %e, "bus not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return Err(e).context("creating topics"),
        }
    }
    if cfg.registry.seed_fixtures || roles.simulate {
        let mut entries = fixtures::registry();
        entries.extend(
            fixtures::load::stations(cfg.demo.load_stations)
                .into_iter()
                .map(model::RegistryEntry::Station),
        );
        if cfg.registry.fixture_cameras {
            entries.extend(
                fixtures::cameras::cameras(&cfg.registry.fixture_rtsp)
                    .into_iter()
                    .map(model::RegistryEntry::Camera),
            );
        }
        entries.extend(
            fixtures::wall::layouts(cfg.registry.fixture_cameras)
                .into_iter()
                .map(model::RegistryEntry::Layout),
        );
        ingest::registry::publish(&*bus, &cfg.topics.registry, "registry:fixtures", &entries)
            .await
            .context("publishing the fixture registry")?;
        info!(entries = entries.len(), "fixture registry published");
    }
    if cfg.registry.fixture_indicators || roles.simulate {
        seed_indicators(&bus, &cfg.topics).await?;
    }
    if !cfg.registry.files.is_empty() {
        // After the fixtures: the province's own entries win where ids meet.
        let entries =
            ingest::registry::load_files(&cfg.registry.files).context("registry.files")?;
        ingest::registry::publish(&*bus, &cfg.topics.registry, "registry:files", &entries)
            .await
            .context("publishing registry.files")?;
        info!(entries = %ingest::registry::summary(&entries), "registry files published");
    }

    let mut parts = Parts {
        tasks: JoinSet::new(),
        app: Router::new(),
        checks: Vec::new(),
    };
    if let Some(o) = auth.oidc().cloned() {
        parts.check("oidc", move || o.report());
    }
    let history = history_backend(&cfg, roles, &mut parts, &bus)?;
    cfg.ui
        .basemap
        .check()
        .map_err(anyhow::Error::msg)
        .context("ui.basemap")?;
    let tiles = match &cfg.ui.basemap {
        ui_feeds::basemap::Basemap::Mbtiles { path, .. } if roles.api => Some(
            ui_feeds::basemap::Tiles::open(path)
                .await
                .with_context(|| format!("opening the MBTiles basemap {}", path.display()))?,
        ),
        _ => None,
    };
    let auditor = Arc::new(
        audit::Auditor::new(history.clone(), &cfg.audit)
            .with_context(|| format!("audit.ship {:?}", cfg.audit.ship))?,
    );
    if !auditor.keeps_log() && (roles.api || roles.ingest) {
        warn!("no store.database_url: this process keeps no audit log, so it refuses writes (alerts, zones, layouts, reports, indicators) with 503");
    }
    let shared = Shared {
        auditor: auditor.clone(),
        tiles,
        cfg: cfg.clone(),
        roles,
        bus: bus.clone(),
        auth: auth.clone(),
        mode,
        history,
        core_status: Arc::new(stream_core::CoreStatus::default()),
    };
    if roles.core {
        core_role(&shared, &mut parts);
    }
    let ingest = roles.ingest.then(|| ingest_role(&shared, &mut parts));
    let cameras = video_role(&shared, &mut parts)?;
    let intake = match &ingest {
        Some(i) => Some(i.intake.clone()),
        None if roles.api => {
            let places = registry_view(&shared, &mut parts, "intake-registry");
            Some(report_intake(&shared, &mut parts, places))
        }
        None => None,
    };
    api_role(
        &shared,
        &mut parts,
        intake,
        cameras,
        limiter.clone(),
        recorder,
    );
    if roles.simulate {
        if let Some(ing) = ingest.as_ref().map(|i| i.sensors.clone()) {
            parts.spawn(
                "simulator",
                simulate(ing.clone(), cfg.demo.interval_s, cfg.demo.backfill_hours),
            );
            let (bus, topics) = (shared.bus.clone(), cfg.topics.clone());
            parts.spawn("indicator-simulator", simulate_indicators(bus, topics));
            if cfg.demo.load_stations > 0 && cfg.demo.load_rate > 0.0 {
                parts.spawn(
                    "load",
                    load(ing, cfg.demo.load_stations, cfg.demo.load_rate),
                );
            }
        }
    }
    let Parts { mut tasks, app, .. } = parts;

    let addr: SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", cfg.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    info!(%local, "http listening");
    if roles.simulate {
        print_demo_banner(&auth, &cfg, local);
        if cfg.demo.report_every_s > 0.0 {
            spawn(
                &mut tasks,
                "report-simulator",
                crate::citizens::simulate(auth.clone(), local, cfg.demo.clone()),
            );
        }
    }
    let http = cfg.http.clone();
    let csp = crate::http::content_security_policy(cfg.ui.basemap.image_origin().as_deref());
    let write_limits = crate::http::WriteLimits {
        limiter: limiter.clone(),
        auth: auth.clone(),
    };
    let audit_layer = audit::AuditLayer {
        auditor,
        auth: auth.clone(),
    };
    spawn(&mut tasks, "http", async move {
        crate::http::serve(listener, app, http, write_limits, audit_layer, csp)
            .await
            .context("http server")
    });

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            info!("interrupted; stopping");
            Ok(())
        }
        Some(done) = tasks.join_next() => {
            match done {
                Ok((name, Ok(()))) => bail!("{name} stopped unexpectedly"),
                Ok((name, Err(e))) => {
                    error!(task = name, error = format!("{e:#}"), "role failed");
                    Err(e.context(format!("{name} failed")))
                }
                Err(e) => bail!("a task panicked: {e}"),
            }
        }
    }
}

/// The stream core and its readiness.
fn core_role(s: &Shared, parts: &mut Parts) {
    let (bus, topics) = (s.bus.clone(), s.cfg.topics.clone());
    let (core_cfg, status, h) = (s.cfg.core.clone(), s.core_status.clone(), s.history.clone());
    parts.spawn("stream-core", async move {
        stream_core::run(bus, topics, core_cfg, status, h, std::future::pending())
            .await
            .map_err(Into::into)
    });
    let st = s.core_status.clone();
    parts.check("stream_core", move || json!({"ready": st.is_started()}));
}

/// What ingest gives the other roles of its process.
struct Ingest {
    sensors: Arc<SensorIngest>,
    intake: Arc<ingest::reports::ReportIntake>,
}

/// The registry as ingest and the report intake read it, followed from `ioc.registry`.
fn registry_view(s: &Shared, parts: &mut Parts, task: &'static str) -> Arc<RegistryView> {
    let places = Arc::new(RegistryView::default());
    let (p, bus, topic) = (places.clone(), s.bus.clone(), s.cfg.topics.registry.clone());
    parts.spawn(task, async move {
        p.follow(bus, topic).await.map_err(Into::into)
    });
    places
}

/// The field-report intake (checks, routing, photos, writes to `ioc.reports`). It goes with
/// ingest, and with the api where no ingest runs beside it: `POST /open311/v2/requests` and
/// report assignment are the api's, whichever process takes the sensors.
fn report_intake(
    s: &Shared,
    parts: &mut Parts,
    places: Arc<RegistryView>,
) -> Arc<ingest::reports::ReportIntake> {
    let cfg = &s.cfg;
    let mut rcfg = cfg.reports.clone();
    if rcfg.routing.routes.is_empty() && (cfg.registry.seed_fixtures || s.roles.simulate) {
        let fixture = fixtures::reports::routes();
        rcfg.routing.routes = fixture.routes;
        if rcfg.routing.deadlines.is_empty() {
            rcfg.routing.deadlines = fixture.deadlines;
        }
        info!(
            routes = rcfg.routing.routes.len(),
            "field reports routed by the fixture table"
        );
    }
    let p = places.clone();
    parts.check("report_intake", move || json!({"ready": p.is_ready()}));
    Arc::new(ingest::reports::ReportIntake::new(
        s.bus.clone(),
        cfg.topics.reports.clone(),
        places,
        rcfg,
        s.history.clone(),
    ))
}

/// Sensor ingest (HTTP, MQTT, polls) and the report intake, on one registry view.
fn ingest_role(s: &Shared, parts: &mut Parts) -> Ingest {
    let cfg = &s.cfg;
    let places = registry_view(s, parts, "ingest-registry");
    let intake = report_intake(s, parts, places.clone());
    let k = places.clone();
    parts.check("ingest_registry", move || json!({"ready": k.is_ready()}));
    let sensors = Arc::new(SensorIngest::new(
        s.bus.clone(),
        cfg.topics.clone(),
        places.clone(),
    ));
    let indicators = Arc::new(ingest::indicators::IndicatorIntake::new(
        s.bus.clone(),
        cfg.topics.clone(),
        places.clone(),
    ));
    for src in cfg.ingest.indicator_polls.clone() {
        tokio::spawn(ingest::indicator_poll::run(src, indicators.clone()));
    }
    parts.route(ingest::http::router(ingest::http::HttpIngestState {
        ingest: sensors.clone(),
        indicators,
        auth: s.auth.clone(),
        config: cfg.ingest.http.clone(),
    }));
    if let Some(m) = cfg.ingest.mqtt.clone() {
        let ing = sensors.clone();
        parts.spawn("ingest-mqtt", async move {
            ingest::mqtt::run(m, ing).await.map_err(Into::into)
        });
    }
    for src in cfg.ingest.poll.clone() {
        tokio::spawn(ingest::poll::run(src, sensors.clone()));
    }
    Ingest { sensors, intake }
}

/// Camera workers pull from the field and write to the bus, like ingest, and serve their
/// images to API processes; an API process without them fetches images from the `ioc video`
/// processes listed in `video.workers`. Where the API gets camera images, if anywhere.
#[cfg_attr(not(feature = "video"), allow(unused_variables))]
fn video_role(
    s: &Shared,
    parts: &mut Parts,
) -> anyhow::Result<Option<Arc<dyn media::MediaSource>>> {
    let cfg = &s.cfg;
    #[cfg(not(feature = "video"))]
    if s.roles.video && cfg.video.enabled {
        // A process that is only a video worker has nothing to do; one with other roles
        // carries on without cameras of its own.
        let why = "this ioc was built without the `video` feature (no GStreamer): it runs no \
                   camera workers; build with default features, or set video.enabled = false";
        if !(s.roles.api || s.roles.core || s.roles.ingest) {
            anyhow::bail!(why);
        }
        tracing::warn!("{why}");
    }
    #[cfg(feature = "video")]
    if s.roles.video && cfg.video.enabled {
        let fleet = video::Fleet::new(
            cfg.video.clone(),
            s.bus.clone(),
            cfg.topics.cameras.clone(),
            "video",
        )
        .context("starting the camera workers")?;
        let (f, bus, topic) = (fleet.clone(), s.bus.clone(), cfg.topics.registry.clone());
        parts.spawn("video", async move {
            f.follow(bus, topic).await.map_err(Into::into)
        });
        let f = fleet.clone();
        parts.check(
            "video",
            move || json!({"ready": f.is_ready(), "cameras": f.len()}),
        );
        parts.route(video::media::router(fleet.clone(), s.auth.clone()));
        return Ok(Some(fleet));
    }
    if s.roles.api && !cfg.video.workers.is_empty() {
        let workers =
            media::RemoteWorkers::new(&cfg.video.workers, cfg.video.max_viewers, s.auth.clone())
                .context("video.workers")?;
        info!(
            workers = cfg.video.workers.len(),
            "camera images from the video workers"
        );
        return Ok(Some(Arc::new(workers)));
    }
    Ok(None)
}

/// The REST API and, where this process runs the api role, the replica and the websocket
/// feeds. Every process serves health, readiness and metrics (over an empty state when it
/// runs no api).
fn api_role(
    s: &Shared,
    parts: &mut Parts,
    intake: Option<Arc<ingest::reports::ReportIntake>>,
    cameras: Option<Arc<dyn media::MediaSource>>,
    limiter: Arc<auth::limits::SharedLimiter>,
    recorder: metrics_exporter_prometheus::PrometheusHandle,
) {
    let cfg = &s.cfg;
    // One memory of used tickets for the media and websocket tickets this process takes.
    let used_tickets: Arc<auth::UsedTickets> = Default::default();
    let replica = if s.roles.api {
        let replica = Replica::new(replica::DEFAULT_RECENT);
        let (r, bus, topic) = (replica.clone(), s.bus.clone(), cfg.topics.state.clone());
        let (status, wait_for_core) = (s.core_status.clone(), s.roles.core);
        parts.spawn("replica", async move {
            // In one process, follow the state only once the core has published it, so
            // that "caught up" means "has the whole picture".
            while wait_for_core && !status.is_started() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r.follow(bus, topic).await.map_err(Into::into)
        });
        parts.route(ui_feeds::router(ui_feeds::FeedsState {
            replica: replica.clone(),
            auth: s.auth.clone(),
            config: cfg.feeds.clone(),
            mode: s.mode.clone(),
            history: s.history.clone(),
            basemap: cfg.ui.basemap.clone(),
            tiles: s.tiles.clone(),
            used_tickets: used_tickets.clone(),
        }));
        replica
    } else {
        let replica = Replica::new(1);
        replica.set_ready();
        replica
    };
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.listen.replace("0.0.0.0", "127.0.0.1")));
    if s.roles.api {
        match auth::login::Login::new(s.auth.clone(), &public_url) {
            Ok(login) => {
                let login = match s.roles.simulate {
                    true => login.with_demo(demo_accounts(), cfg.auth.ttl().num_seconds()),
                    false => login,
                };
                parts.route(auth::login::router(Arc::new(login)));
            }
            Err(e) => warn!(error = %e, "the pages' login is off"),
        }
    }
    let api_state = map_api::ApiState {
        replica,
        auth: s.auth.clone(),
        bus: s.bus.clone(),
        checks: parts.checks.clone(),
        metrics: Arc::new(move || recorder.render()),
        mode: s.mode.clone(),
        history: s.history.clone(),
        alerts_topic: cfg.topics.alerts.clone(),
        registry_topic: cfg.topics.registry.clone(),
        reports_topic: cfg.topics.reports.clone(),
        indicators_topic: cfg.topics.indicators.clone(),
        intake,
        report_locks: Default::default(),
        cameras,
        hls_sessions: Default::default(),
        media_ticket_ttl: cfg.auth.media_ticket_ttl(),
        limits: limiter,
        auditor: s.auditor.clone(),
        used_tickets,
        public_url,
    };
    let auditor = s.auditor.clone();
    parts.spawn("audit-folds", async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            auditor.flush_folded().await;
        }
    });
    parts.route(map_api::router(api_state));
}

fn print_demo_banner(auth: &Authenticator, cfg: &Config, local: SocketAddr) {
    let ttl = cfg.auth.ttl();
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    println!();
    println!("IOC demo: in-memory bus, simulated sensors of Hậu Giang, Tiền Giang and Long Xuyên.");
    match &cfg.store.database_url {
        Some(u) => println!("History: PostgreSQL at {u}."),
        None => println!(
            "History: in memory (the last {} readings), lost on exit; set store.database_url to keep it.",
            cfg.store.memory_readings
        ),
    }
    println!();
    let base = format!("http://{host}:{}", local.port());
    println!("  Sign in (one click per role): {base}/auth/demo");
    println!("  Wall page (operator):  {base}/");
    println!("  Leaders' page (leader): {base}/leader");
    for n in 0..2 {
        println!("  Wall screen {n} (operator): {base}/wall/tuong-chinh?screen={n}");
    }
    println!("  Camera map (police):   {base}/cameras");
    println!();
    println!(
        "Access tokens (valid {} h; send as 'Authorization: Bearer <token>'):",
        ttl.num_hours()
    );
    for role in Role::ALL {
        let sub = format!("demo-{role}");
        // The demo's agency user and sensor gateway belong to Hậu Giang's environment
        // department (a sensor token may report only for its agency's stations).
        let agency = matches!(role, Role::Agency | Role::Sensor).then_some("hg-stnmt");
        println!(
            "  {:<9} {}",
            role.as_str(),
            auth.issue(&sub, role, agency, ttl)
        );
    }
    println!();
}

/// The demo's one-click logins: one per role a person has (devices use tokens), each with
/// the page it opens first.
fn demo_accounts() -> Vec<auth::login::DemoAccount> {
    let a = |label: &str, role: Role, agency: Option<&str>, home: &str| auth::login::DemoAccount {
        label: label.into(),
        sub: format!("demo-{role}"),
        role,
        agency: agency.map(str::to_string),
        grants: vec![],
        home: home.into(),
    };
    vec![
        a("Điều hành viên — tường màn hình", Role::Operator, None, "/"),
        a(
            "Lãnh đạo tỉnh — bảng chỉ tiêu",
            Role::Leader,
            None,
            "/leader",
        ),
        a("Công an — bản đồ camera", Role::Police, None, "/cameras"),
        a(
            "Sở Tài nguyên và Môi trường",
            Role::Agency,
            Some("hg-stnmt"),
            "/",
        ),
        a("Quản trị hệ thống", Role::Admin, None, "/"),
        a("Người dân", Role::Citizen, None, "/"),
    ]
}

/// Feeds simulated readings of the fixture stations through the ingest path.
async fn simulate(
    ing: Arc<SensorIngest>,
    interval_s: f64,
    backfill_hours: u32,
) -> anyhow::Result<()> {
    let stations = fixtures::stations::stations();
    let mut sim = fixtures::sim::Simulator::new(Utc::now().timestamp() as u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(interval_s.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !ing.stations().is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The past first, so that charts, VN_AQI and replays have something to show at once.
    if backfill_hours > 0 {
        let start = Utc::now() - chrono::Duration::hours(i64::from(backfill_hours));
        let step = chrono::Duration::minutes(5);
        let mut t = start;
        while t < Utc::now() {
            for s in &stations {
                let items = serde_json::Value::Array(sim.readings(s, t));
                if let Err(e) = ing.accept(&format!("sim:{}", s.id), None, &items).await {
                    warn!(station = %s.id, error = %e, "simulated past readings not accepted");
                }
            }
            t += step;
        }
        info!(hours = backfill_hours, "simulated history filled in");
    }
    loop {
        tick.tick().await;
        let now = Utc::now();
        for s in &stations {
            let items = serde_json::Value::Array(sim.readings(s, now));
            if let Err(e) = ing.accept(&format!("sim:{}", s.id), None, &items).await {
                warn!(station = %s.id, error = %e, "simulated readings not accepted");
            }
        }
    }
}

/// Benchmark load: `rate` readings/s over `n` synthetic stations.
async fn load(ing: Arc<SensorIngest>, n: usize, rate: f64) -> anyhow::Result<()> {
    while !ing.stations().is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_tick = (rate / 100.0).ceil().max(1.0) as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(per_tick as f64 / rate));
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        let now = Utc::now();
        let items: Vec<_> = (0..per_tick)
            .map(|i| fixtures::load::reading(n, seq + i, now))
            .collect();
        seq += per_tick;
        if let Err(e) = ing
            .accept("load", None, &serde_json::Value::Array(items))
            .await
        {
            warn!(error = %e, "load readings not accepted");
        }
    }
}

/// Puts the fixture indicators' history on `ioc.indicators` unless something is there
/// already (a restart, or a province's own figures).
async fn seed_indicators(bus: &Arc<dyn bus::Bus>, topics: &bus::Topics) -> anyhow::Result<()> {
    let mut sub = bus
        .read_all(&[&topics.indicators])
        .await
        .context("reading the indicators topic")?;
    if sub.next_until_caught_up().await?.is_some() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let events = fixtures::indicators::history(
        model::indicator::period::vietnam_date(now),
        now.fixed_offset(),
    );
    let writes = events.iter().map(|e| {
        let env = ingest::indicators::envelope(e, "fixture:indicators", now);
        let bytes = env.to_bytes();
        let key = env.entity.to_string();
        async move { bus.publish(&topics.indicators, &key, Some(bytes)).await }
    });
    for r in futures::future::join_all(writes).await {
        r.context("publishing the fixture indicators")?;
    }
    info!(values = events.len(), "fixture indicators published");
    Ok(())
}

/// The demo's departments revising their figures: a correction every 20 s.
async fn simulate_indicators(bus: Arc<dyn bus::Bus>, topics: bus::Topics) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(20));
    tick.tick().await;
    for n in 0.. {
        tick.tick().await;
        let now = chrono::Utc::now();
        let today = model::indicator::period::vietnam_date(now);
        let Some(e) = fixtures::indicators::correction(n, today, now.fixed_offset()) else {
            continue;
        };
        let env = ingest::indicators::envelope(&e, "fixture:simulator", now);
        if let Err(err) = bus
            .publish(
                &topics.indicators,
                env.entity.as_str(),
                Some(env.to_bytes()),
            )
            .await
        {
            warn!(error = %err, "indicator correction not written");
        }
    }
    Ok(())
}
