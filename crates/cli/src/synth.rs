//! `musubi synth`: writes a synthetic Japanese region (people, facilities, each facility's
//! FHIR, SS-MIX2 and UKE data, truth files) with a progress bar.

use std::path::PathBuf;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use musubi_synth::{Formats, SynthOptions};

/// What `musubi synth` was asked for.
pub struct SynthArgs {
    pub persons: u64,
    pub seed: u64,
    pub out: PathBuf,
    pub start_year: i32,
    pub years: u32,
    pub formats: String,
    pub threads: usize,
    pub quiet: bool,
}

/// Parses `fhir,ssmix2,uke,truth` (or `all`) into the output switches.
pub fn parse_formats(list: &str) -> Result<Formats> {
    let mut f = Formats { fhir: false, ssmix2: false, uke: false, truth: false };
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => f = Formats::default(),
            "fhir" => f.fhir = true,
            "ssmix2" => f.ssmix2 = true,
            "uke" => f.uke = true,
            "truth" => f.truth = true,
            other => bail!("unknown output format {other:?}: use fhir, ssmix2, uke, truth or all"),
        }
    }
    if !(f.fhir || f.ssmix2 || f.uke || f.truth) {
        bail!("no output format chosen: use fhir, ssmix2, uke, truth or all");
    }
    Ok(f)
}

struct Bar(ProgressBar);

impl musubi_synth::Progress for Bar {
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_owned());
    }
}

pub fn run(args: SynthArgs) -> Result<()> {
    if args.persons == 0 {
        bail!("--persons must be at least 1");
    }
    let mut opts = SynthOptions::new(args.persons, args.seed, &args.out);
    opts.formats = parse_formats(&args.formats)?;
    opts.start_year = args.start_year;
    opts.years = args.years;
    opts.threads = args.threads;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(args.persons) };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} persons ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let manifest = musubi_synth::generate(&opts, &Bar(bar.clone())).map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} 人、{} 施設を {:.1} 秒で生成しました（{:.0} 人/秒）: {}",
        manifest.persons,
        manifest.facilities,
        secs,
        manifest.persons as f64 / secs.max(1e-9),
        args.out.display()
    );
    eprintln!("内訳: {}", args.out.join("manifest.json").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        let f = parse_formats("fhir,truth").unwrap();
        assert!(f.fhir && f.truth && !f.ssmix2 && !f.uke);
        assert_eq!(parse_formats("all").unwrap(), Formats::default());
        assert!(parse_formats("fhir,pdf").is_err());
        assert!(parse_formats("").is_err());
    }
}
