//! The collector's CPU side on one thread, without the store: SS-MIX2 files mapped
//! (`source::ssmix2_file`) and then validated and prepared (`Service::prepare_collected`).
//!
//! ```sh
//! cargo run --release -p musubi-collect --example worker_throughput -- SYNTH_DIR/ssmix2
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn walk(d: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(d).expect("readable directory") {
        let p = e.expect("entry").path();
        if p.is_dir() { walk(&p, out) } else { out.push(p) }
    }
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: worker_throughput SYNTH_DIR/ssmix2"));
    let mut files = Vec::new();
    for f in std::fs::read_dir(&root).expect("the per-facility directories") {
        let f = f.expect("entry").path();
        let code: musubi_domain::FacilityCode =
            f.file_name().and_then(|n| n.to_str()).expect("name").parse().expect("a facility code");
        let mut v = Vec::new();
        walk(&f, &mut v);
        for p in v {
            let rel = p.strip_prefix(&f).expect("under").to_string_lossy().into_owned();
            files.push((code, rel, std::fs::read(&p).expect("read")));
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let store = musubi_store::Store::open_sqlite(dir.path()).expect("store");
    let service = musubi_service::Service::new(store, "bench");
    let t = Instant::now();
    let sources: Vec<_> = files
        .iter()
        .map(|(c, rel, b)| {
            let meta = musubi_collect::source::FileMeta {
                path: rel.clone(),
                size: b.len() as i64,
                mtime: 0,
                seen_before: false,
            };
            musubi_collect::source::ssmix2_file(*c, meta, b)
        })
        .collect();
    let t_map = t.elapsed();
    let t = Instant::now();
    let mut items = 0;
    for (s, (c, _, _)) in sources.into_iter().zip(&files) {
        let actor = musubi_gate::Actor::System { name: "bench".into(), facility: *c };
        let p = service.prepare_collected(&actor, s);
        items += p.resources() + p.quarantined();
    }
    let t_prep = t.elapsed();
    let n = files.len() as f64;
    println!(
        "{} files: map {:?} ({:.0} files/s), validate+prepare {:?} ({:.0} files/s), {items} resources and entries",
        files.len(),
        t_map,
        n / t_map.as_secs_f64(),
        t_prep,
        n / t_prep.as_secs_f64()
    );
}
