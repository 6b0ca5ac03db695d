//! Times the generation stages separately (people only, then each format).
use musubi_synth::{Formats, NoProgress, SynthOptions, generate, persons, region};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut opts = SynthOptions::new(n, 20_261_122, std::env::temp_dir().join("synth-timing"));
    let r = region(opts.seed, n);
    let t = Instant::now();
    let c = persons(&r, &opts).map(|p| p.care.encounters.len()).sum::<usize>();
    println!("people only: {:.2}s ({c} encounters)", t.elapsed().as_secs_f64());
    for (name, f) in [
        ("truth", Formats { fhir: false, ssmix2: false, uke: false, truth: true }),
        ("fhir", Formats { fhir: true, ssmix2: false, uke: false, truth: false }),
        ("ssmix2", Formats { fhir: false, ssmix2: true, uke: false, truth: false }),
        ("uke", Formats { fhir: false, ssmix2: false, uke: true, truth: false }),
    ] {
        opts.formats = f;
        opts.out_dir = std::env::temp_dir().join(format!("synth-timing-{name}"));
        let _ = std::fs::remove_dir_all(&opts.out_dir);
        opts.threads = 1;
        let t = Instant::now();
        generate(&opts, &NoProgress).unwrap();
        println!("{name}: {:.2}s", t.elapsed().as_secs_f64());
    }
}
