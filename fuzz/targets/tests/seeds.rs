//! Every seed of `fuzz/corpus/<target>/` through its target: the corpora run in CI as
//! ordinary tests (the long fuzzing runs do not; see `ops/fuzz.sh`). Every crash a fuzzing
//! run finds is added to its corpus, so it stays fixed.

use std::path::Path;

#[test]
fn every_seed_runs_through_its_target_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut ran = 0;
    for (name, target) in ioc_fuzz_targets::TARGETS {
        let dir = root.join(name);
        let seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            target(&data);
            ran += 1;
        }
    }
    assert!(ran >= 40, "{ran} seeds");
}
