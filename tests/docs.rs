//! What the deployment guide and the Grafana dashboard name exists: every `ioc_*` metric
//! they mention is one the code records, and every file the guide points to is there.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every Rust source of the workspace, concatenated.
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut s = String::new();
    walk(root(), &mut s);
    s
}

fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ioc_") {
        let start = i + at;
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        // Only metric-shaped names (ioc_<area>_<what>), not file or crate names.
        if name.matches('_').count() >= 2 && (start == 0 || !b[start - 1].is_ascii_alphanumeric()) {
            out.push(name.to_string());
        }
        i = end.max(start + 4);
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_guide_and_the_dashboard_name_only_metrics_that_exist() {
    let code = sources();
    for doc in ["ops/DEPLOY.md", "ops/grafana/ioc.json"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() > 5, "{doc} names metrics: {names:?}");
        for n in names {
            assert!(
                code.contains(&format!("\"{n}\"")),
                "{doc} names {n}, which no code records"
            );
        }
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("ops/grafana/ioc.json")).unwrap(),
    )
    .unwrap();
    assert!(dash["panels"].as_array().is_some_and(|p| !p.is_empty()));
}

#[test]
fn the_files_the_guide_points_to_exist() {
    for f in [
        "ops/nginx/ioc.conf",
        "ops/package.sh",
        "ops/grafana/ioc.json",
        "ops/debian/units/ioc-serve.service",
        "ops/debian/units/ioc-.service.d/10-ioc.conf",
        "ops/mosquitto",
        "store/migrations",
        "BENCHMARKS.md",
    ] {
        assert!(
            root().join(f).exists(),
            "{f} is named in ops/DEPLOY.md but missing"
        );
    }
}
