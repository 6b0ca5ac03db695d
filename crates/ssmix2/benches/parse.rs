//! Parse-only and parse+map rates over the SS-MIX2 sample storage (messages/s).

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use musubi_ssmix2::{collect, decode, hl7::Message};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData");

fn samples() -> Vec<(String, Vec<u8>)> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).expect("sample dir") {
            let p = e.expect("entry").path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(ROOT), &mut files);
    files
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/ADT-31/"))
        .map(|p| {
            let rel = p.strip_prefix(ROOT).expect("under root").to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).expect("read sample");
            (rel, bytes)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = samples();
    let facility = "1318814790".parse().expect("facility");
    let mut g = c.benchmark_group("ssmix2");
    g.throughput(Throughput::Elements(files.len() as u64));
    g.bench_function("decode+parse (messages)", |b| {
        b.iter(|| {
            let mut segments = 0;
            for (_, bytes) in &files {
                let text = decode::decode(bytes).text;
                if let Ok(m) = Message::parse(&text) {
                    segments += m.segments.len();
                }
            }
            segments
        })
    });
    g.bench_function("collect: parse+map (messages)", |b| {
        b.iter(|| {
            let mut n = 0;
            for (rel, bytes) in &files {
                if collect(facility, rel, bytes).is_ok() {
                    n += 1;
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
