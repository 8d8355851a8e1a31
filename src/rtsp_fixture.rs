//! `ioc rtsp-fixture`: the fixture RTSP server as a process of its own, for `ioc serve`
//! against test cameras and for the camera benchmark (which must not count the server's CPU
//! as the workers'). Mounts the fixture cameras, or N numbered ones, and takes commands on
//! stdin, one per line: `stop <mount>`, `stall <mount>`, `resume <mount>`,
//! `resolution <mount> <w> <h>`; each is answered `ok` or `error: ...` on stdout.

use std::io::{BufRead, Write};

use anyhow::Context;
use fixtures::rtsp::{FixtureCodec, RtspFixture, RtspFixtureConfig};

#[derive(clap::Args)]
pub struct FixtureArgs {
    #[arg(long, default_value_t = 8554)]
    pub port: u16,
    /// 0 = the fixture cameras of the three jurisdictions; N = `<prefix>-0000`...
    #[arg(long, default_value_t = 0)]
    pub cameras: usize,
    #[arg(long, default_value = "cam")]
    pub prefix: String,
    #[arg(long, default_value_t = 15)]
    pub fps: u32,
    /// Basic-auth user and password clients must give (IOC_RTSP_FIXTURE_PASSWORD).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, env = "IOC_RTSP_FIXTURE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The clip's codec, as the cameras would send it: h264 or h265.
    #[arg(long, default_value = "h264", value_parser = ["h264", "h265"])]
    pub codec: String,
}

pub fn run(a: FixtureArgs) -> anyhow::Result<()> {
    let server = RtspFixture::start(RtspFixtureConfig {
        port: a.port,
        fps: a.fps.max(1),
        credentials: a.user.zip(a.password),
        codec: match a.codec.as_str() {
            "h265" => FixtureCodec::H265,
            _ => FixtureCodec::H264,
        },
        ..Default::default()
    })
    .context("starting the fixture RTSP server")?;
    let names: Vec<String> = match a.cameras {
        0 => fixtures::cameras::cameras(&server.base_url())
            .into_iter()
            .map(|c| c.id.to_string())
            .collect(),
        n => (0..n).map(|i| format!("{}-{i:04}", a.prefix)).collect(),
    };
    for n in &names {
        server.mount(n)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {}", server.base_url(), names.len())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            [cmd, mount, rest @ ..] => match server.get(mount) {
                None => format!("error: no mount {mount}"),
                Some(m) => match (*cmd, rest) {
                    ("stop", []) => {
                        m.stop();
                        "ok".into()
                    }
                    ("stall", []) => {
                        m.stall();
                        "ok".into()
                    }
                    ("resume", []) => {
                        m.resume();
                        "ok".into()
                    }
                    ("resolution", [w, h]) => match (w.parse(), h.parse()) {
                        (Ok(w), Ok(h)) => match m.set_resolution(w, h) {
                            Ok(()) => "ok".into(),
                            Err(e) => format!("error: {e}"),
                        },
                        _ => "error: resolution <mount> <width> <height>".into(),
                    },
                    _ => format!("error: unknown command {line:?}"),
                },
            },
            [] => continue,
            _ => format!("error: unknown command {line:?}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
