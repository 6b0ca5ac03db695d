//! Validates every published valid example in a loop and prints resources per second
//! (counting contained resources and Bundle entries). Run it under `perf stat` or `time` on a
//! busy machine to compare CPU time rather than wall time.
//!
//! `cargo run --release -p musubi-validate --example throughput [seconds]`

use std::time::{Duration, Instant};

use musubi_validate::Validator;
use serde_json::Value;

fn count_resources(v: &Value) -> usize {
    let mut n = usize::from(v.get("resourceType").is_some());
    for c in v.get("contained").and_then(Value::as_array).into_iter().flatten() {
        n += count_resources(c);
    }
    for e in v.get("entry").and_then(Value::as_array).into_iter().flatten() {
        n += e.get("resource").map_or(0, count_resources);
    }
    n
}

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference");
    let mut docs = Vec::new();
    for dir in ["jp-clins/examples", "jp-core/json-examples", "eCheckup"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && !p.to_string_lossy().contains("ErrorExample")
                && let Ok(Ok(v)) = std::fs::read_to_string(&p).map(|t| serde_json::from_str::<Value>(&t))
            {
                docs.push(v);
            }
        }
    }
    let per_round: usize = docs.iter().map(count_resources).sum();
    let v = Validator::shared();
    let start = Instant::now();
    let mut rounds = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        for d in &docs {
            std::hint::black_box(v.validate_resource(d));
        }
        rounds += 1;
    }
    let el = start.elapsed().as_secs_f64();
    let total = rounds * per_round;
    println!(
        "{} documents, {per_round} resources per round, {rounds} rounds: {total} resources in {el:.2} s = {:.0} resources/s (wall), {:.2} µs/resource",
        docs.len(),
        total as f64 / el,
        el * 1e6 / total as f64
    );
}
