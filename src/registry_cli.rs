//! `ioc registry`: the registry topic from the command line, for the people who keep a
//! province's inventory. `import` checks camera sheets (.csv) and registry entries
//! (.json/.jsonl) whole and publishes them only when every entry is good; `export` writes the
//! registry as it stands (cameras as a sheet to edit and import again); `remove` takes
//! entities off the map (their workers stop, their layers drop them). Both wait for the
//! broker's acknowledgement before saying anything was done.

use std::path::PathBuf;

use anyhow::{bail, Context};
use model::{EntityId, RegistryEntry};

use crate::config::{BusKind, Config};

/// How long a command waits for the brokers before it gives up (a person is waiting).
const BROKER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(clap::Subcommand)]
pub enum RegistryCommand {
    /// Checks registry files (a camera sheet as .csv with columns id, name, lon, lat, agency,
    /// purpose, group, url, transport, credentials; any registry entries as .json or .jsonl)
    /// and publishes them when every entry is good. One problem, and nothing is published.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check and report only; publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Writes the registry as it stands: `FILE.csv` gets the cameras as a camera sheet (edit
    /// it and import it again), `FILE.jsonl` every entry, one per line.
    Export { out: PathBuf },
    /// Removes entities from the registry: `camera:<id>`, `station:<id>`, ...
    Remove {
        #[arg(required = true)]
        entities: Vec<String>,
    },
}

pub async fn run(cfg: &Config, command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Import { files, dry_run } => {
            let entries = ingest::registry::load_files(&files)?;
            let summary = ingest::registry::summary(&entries);
            for (camera, set) in unknown_credential_sets(cfg, &entries) {
                eprintln!("note: camera {camera} names credential set `{set}`, which this configuration's video.credentials lacks; the video workers need it");
            }
            if dry_run {
                println!("checked {summary}: no problems; nothing published (--dry-run)");
                return Ok(());
            }
            let bus = kafka(cfg).await?;
            let n =
                ingest::registry::publish(&*bus, &cfg.topics.registry, "registry:import", &entries)
                    .await
                    .context("publishing to the registry topic")?;
            println!(
                "published {summary} ({n} entries) to {}",
                cfg.topics.registry
            );
        }
        RegistryCommand::Export { out } => {
            let bus = kafka(cfg).await?;
            let entries = ingest::registry::current(&*bus, &cfg.topics.registry)
                .await
                .context("reading the registry topic")?;
            let name = out.to_string_lossy().to_ascii_lowercase();
            let (text, what) = if name.ends_with(".csv") {
                let cameras: Vec<&model::Camera> = entries
                    .iter()
                    .filter_map(|e| match e {
                        RegistryEntry::Camera(c) => Some(c),
                        _ => None,
                    })
                    .collect();
                let n = cameras.len();
                (
                    ingest::registry::camera_sheet(&cameras)?,
                    format!("{n} camera"),
                )
            } else if name.ends_with(".jsonl") {
                let mut lines = String::new();
                for e in &entries {
                    lines.push_str(&serde_json::to_string(e)?);
                    lines.push('\n');
                }
                (lines, ingest::registry::summary(&entries))
            } else {
                bail!(
                    "{}: export to a .csv (cameras) or a .jsonl (every entry)",
                    out.display()
                );
            };
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {what} from {} to {}",
                cfg.topics.registry,
                out.display()
            );
        }
        RegistryCommand::Remove { entities } => {
            let ids = entities
                .iter()
                .map(|e| EntityId::parse(e).map_err(|err| anyhow::anyhow!("`{e}`: {err}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let bus = kafka(cfg).await?;
            let n = ingest::registry::remove(&*bus, &cfg.topics.registry, "registry:remove", &ids)
                .await
                .context("publishing to the registry topic")?;
            println!("removed {n} entities from {}", cfg.topics.registry);
        }
    }
    Ok(())
}

/// Cameras naming a credential set this configuration does not hold (when it holds any: an
/// importing machine may well have none, the workers do).
fn unknown_credential_sets(cfg: &Config, entries: &[RegistryEntry]) -> Vec<(String, String)> {
    if cfg.video.credentials.is_empty() {
        return Vec::new();
    }
    entries
        .iter()
        .filter_map(|e| match e {
            RegistryEntry::Camera(c) => c
                .stream
                .credentials
                .as_ref()
                .filter(|set| !cfg.video.credentials.contains_key(set.as_str()))
                .map(|set| (c.id.to_string(), set.clone())),
            _ => None,
        })
        .collect()
}

/// The registry lives on Kafka; a separate process cannot reach a demo's in-memory bus. The
/// topics are made as `serve` makes them (the registry compacted), should this run first.
async fn kafka(cfg: &Config) -> anyhow::Result<std::sync::Arc<dyn bus::Bus>> {
    if cfg.bus.kind != BusKind::Kafka {
        bail!("`ioc registry` writes to Kafka (bus.kind = \"kafka\"); a demo takes its files from registry.files");
    }
    let bus = bus::KafkaBus::connect(cfg.bus.kafka.clone()).context("connecting to Kafka")?;
    let brokers = &cfg.bus.kafka.brokers;
    tokio::time::timeout(
        BROKER_WAIT,
        bus::Bus::ensure_topics(&bus, &cfg.topics.specs(cfg.bus.partitions)),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "Kafka at {brokers} did not answer within {BROKER_WAIT:?}; nothing was published"
        )
    })?
    .with_context(|| format!("creating the topics on {brokers}; nothing was published"))?;
    Ok(std::sync::Arc::new(bus))
}
