//! The Debian package on a fresh Debian 12: the test command builds it (`cargo deb`, of the
//! dev build the tests use; `ops/package.sh` packages the release build) and makes
//! a root with debootstrap; here it is installed there with apt, which pulls its dependencies
//! from Debian; then `ioc --version`, `ioc config` and `ioc migrate` (against a private
//! PostgreSQL) run inside, the `ioc` user, the conffile and the secret's permissions are as
//! the package says, `ioc demo` runs as that user and answers, and `systemd-analyze verify`
//! passes on every unit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::postgres::PrivatePostgres;
use common::*;

/// A Debian root unpacked for this test, `/proc` mounted; unmounted and removed on drop.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn unpack(tar: &str) -> Root {
        let dir = std::env::temp_dir().join(unique("debian-12"));
        std::fs::create_dir_all(&dir).unwrap();
        let root = Root { dir };
        must(
            Command::new("tar")
                .arg("-xf")
                .arg(tar)
                .arg("-C")
                .arg(&root.dir),
            "unpacking the root",
        );
        must(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(root.dir.join("proc")),
            "mounting /proc in the root",
        );
        // Name resolution and the machine's own Debian mirror, as on a fresh install.
        std::fs::copy("/etc/resolv.conf", root.dir.join("etc/resolv.conf")).unwrap();
        if Path::new("/etc/apt/sources.list.d/debian.sources").exists() {
            std::fs::copy(
                "/etc/apt/sources.list.d/debian.sources",
                root.dir.join("etc/apt/sources.list.d/debian.sources"),
            )
            .unwrap();
            let _ = std::fs::remove_file(root.dir.join("etc/apt/sources.list"));
        }
        // No service starts inside a root (there is no init).
        let rc = root.dir.join("usr/sbin/policy-rc.d");
        std::fs::write(&rc, "#!/bin/sh\nexit 101\n").unwrap();
        must(Command::new("chmod").arg("755").arg(&rc), "policy-rc.d");
        root
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    /// Runs `args` inside the root (as root, or as `user`).
    fn run(&self, user: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new("chroot");
        if let Some(u) = user {
            c.arg(format!("--userspec={u}:{u}"));
        }
        c.arg(&self.dir)
            .arg("env")
            .arg("DEBIAN_FRONTEND=noninteractive")
            .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("chroot")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(None, args);
        assert!(
            out.status.success(),
            "{args:?} in the Debian 12 root: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.join("proc"))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn must(c: &mut Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_on_a_fresh_debian_12_and_runs() {
    let deb = required_env(
        "IOC_TEST_DEB",
        "the Debian package (ops/test.sh builds it with cargo deb)",
    );
    let tar = required_env(
        "IOC_TEST_DEBIAN_ROOT_TAR",
        "a Debian 12 root from debootstrap (ops/test.sh makes it)",
    );
    // What the package declares: the GStreamer elements the workers need, found at run time.
    let depends = String::from_utf8(
        Command::new("dpkg-deb")
            .args(["-f", &deb, "Depends"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for d in [
        "libgstreamer1.0-0",
        "gstreamer1.0-plugins-good",
        "gstreamer1.0-plugins-bad",
        "gstreamer1.0-libav",
        "adduser",
    ] {
        assert!(depends.contains(d), "Depends lacks {d}: {depends}");
    }

    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    assert_eq!(
        String::from_utf8_lossy(&uid).trim(),
        "0",
        "the package test installs into a chroot: run the tests as root (sudo bash ops/test.sh)"
    );
    let root = Root::unpack(&tar);
    std::fs::copy(&deb, root.path("/tmp/ioc.deb")).unwrap();
    root.ok(&["apt-get", "update", "-qq"]);
    // systemd only for systemd-analyze: the package needs none to install.
    root.ok(&[
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "/tmp/ioc.deb",
        "systemd",
    ]);

    let version = root.ok(&["ioc", "--version"]);
    assert!(version.starts_with("ioc "), "{version}");
    let user = root.ok(&["getent", "passwd", "ioc"]);
    assert!(
        user.contains("/var/lib/ioc") && user.contains("nologin"),
        "{user}"
    );
    assert_eq!(
        mode(&root.path("/etc/ioc/auth-secret")),
        0o600,
        "the secret is root's alone"
    );
    assert_eq!(mode(&root.path("/etc/ioc/ioc.toml")), 0o640);
    assert_eq!(mode(&root.path("/etc/ioc")), 0o750);
    let conffiles = root.ok(&["dpkg-query", "-W", "-f=${Conffiles}", "ioc"]);
    assert!(conffiles.contains("/etc/ioc/ioc.toml"), "{conffiles}");

    // `ioc config`: the effective configuration, the secret never shown.
    let secret = std::fs::read_to_string(root.path("/etc/ioc/auth-secret")).unwrap();
    let shown = root.ok(&["ioc", "config", "--config", "/etc/ioc/ioc.toml"]);
    assert!(
        shown.contains("[auth]") || shown.contains("auth"),
        "{shown}"
    );
    assert!(
        !shown.contains(secret.trim()),
        "ioc config printed the secret"
    );

    // `ioc migrate` against a private PostgreSQL on this machine, from inside the root.
    let pg = PrivatePostgres::start();
    let url = format!("IOC_STORE__DATABASE_URL={}", pg.url());
    let out = root.ok(&[
        "env",
        &url,
        "ioc",
        "migrate",
        "--config",
        "/etc/ioc/ioc.toml",
    ]);
    let _ = out;

    // Every unit verifies (syntax, specifiers, the binary it starts, the drop-in).
    let units: Vec<String> = ["serve", "ingest", "core", "api", "video"]
        .iter()
        .map(|r| format!("/lib/systemd/system/ioc-{r}.service"))
        .collect();
    let mut verify = vec!["systemd-analyze", "verify"];
    verify.extend(units.iter().map(String::as_str));
    let out = root.run(None, &verify);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("ioc-"),
        "systemd-analyze verify has something to say: {said}"
    );
    // The shared hardening drop-in applies to every unit: systemd's own exposure score is
    // "OK" (below 2.0 of 10; an unhardened service scores 9.6).
    let mut security = vec![
        "systemd-analyze",
        "security",
        "--offline=yes",
        "--threshold=20",
    ];
    security.extend(units.iter().map(String::as_str));
    let out = root.run(None, &security);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exposure above 2.0: {said}");
    let scores: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("Overall exposure level"))
        .collect();
    assert_eq!(scores.len(), units.len(), "{said}");
    println!("{}", scores.join("\n"));

    // It runs there as the `ioc` user with the libraries apt installed.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut demo = Command::new("chroot")
        .arg("--userspec=ioc:ioc")
        .arg(&root.dir)
        .args([
            "env",
            "HOME=/var/lib/ioc",
            "IOC_DEMO__CAMERAS=false",
            "IOC_DEMO__BACKFILL_HOURS=0",
        ])
        .args(["ioc", "demo", "--listen", &listen])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Ok(r) = reqwest::get(format!("http://{listen}/readyz")).await {
            if r.status() == 200 {
                break true;
            }
        }
        if tokio::time::Instant::now() > deadline || demo.try_wait().unwrap().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(
        ready,
        "ioc demo did not get ready inside the root as the ioc user"
    );
}
