//! A private PostgreSQL server for one test, so the test can stop and start it at will
//! (the database going down mid-run), on either history layout: plain, or preloading
//! TimescaleDB. Uses the server binaries in `IOC_TEST_PG_BIN` (set by the test command to
//! binaries that can load TimescaleDB, a private build when the system has none), else the
//! newest installed PostgreSQL's; when run as root, runs them as the `postgres` user (the
//! server refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    layout: Layout,
    pub port: u16,
}

/// The two history layouts the store supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Postgres,
    Timescale,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Postgres, Layout::Timescale];

    /// `store.timescale` for a process that must use this layout and nothing else.
    pub fn store_mode(self) -> &'static str {
        match self {
            Layout::Postgres => "off",
            Layout::Timescale => "require",
        }
    }
}

fn server_bin(layout: Layout) -> PathBuf {
    if let Ok(dir) = std::env::var("IOC_TEST_PG_BIN") {
        let bin = PathBuf::from(dir);
        assert!(
            bin.join("pg_ctl").exists(),
            "IOC_TEST_PG_BIN={} has no pg_ctl",
            bin.display()
        );
        return bin;
    }
    assert!(
        layout == Layout::Postgres,
        "IOC_TEST_PG_BIN is not set: the TimescaleDB layout needs server binaries that can load timescaledb; `bash ops/test.sh` builds them from the TimescaleDB source tarball and sets it"
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries (pg_ctl, initdb) not found under /usr/lib/postgresql: ops/test.sh installs them (Debian package postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    /// A plain PostgreSQL server.
    pub fn start() -> Self {
        Self::start_layout(Layout::Postgres)
    }

    /// A server for `layout`: TimescaleDB is preloaded for [`Layout::Timescale`].
    pub fn start_layout(layout: Layout) -> Self {
        let bin = server_bin(layout);
        let dir = std::env::temp_dir().join(super::unique("ioc-pg"));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                ok.success(),
                "chown of the private database directory to postgres failed"
            );
        }
        let pg = Self {
            dir,
            bin,
            layout,
            port: super::free_port(),
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.up();
        pg
    }

    /// Runs one of the server's own tools (`pg_dump`, `pg_restore`, `psql`) as the server's
    /// user, asserting it succeeds; its standard output.
    pub fn tool(&self, tool: &str, args: &[&str]) -> String {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        self.tool(tool, args);
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        if self.layout == Layout::Timescale {
            opts.push_str(" -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off -c max_worker_processes=32");
        }
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output()
        } else {
            Command::new(&exe)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
