//! Streaming generation of every output to disk.
//!
//! People are generated in blocks on worker threads; each block's outputs are serialized on
//! the worker (SS-MIX2 files are written there directly, since each is its own file) and
//! handed back in block order, so the main thread appends FHIR lines, UKE receipts and truth
//! rows in person order whatever the thread count. Appends go through small per-file buffers
//! that are flushed by open-append-close, so memory stays bounded and the number of open files
//! stays small however many facilities and months there are.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::noise::NoiseKind;
use crate::region::{FacilityType, Region};
use crate::uke::{self, Receipt, UkeKind};
use crate::{PersonHistory, Progress, SynthError, SynthOptions, block_people, fhir, person, ssmix2};

/// Counts of one facility's outputs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FacilityCounts {
    /// 医療機関コード.
    pub code: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Source patients (registrations).
    pub source_patients: u64,
    /// FHIR Bundles.
    pub fhir_bundles: u64,
    /// SS-MIX2 files.
    pub ssmix2_files: u64,
    /// UKE receipts.
    pub uke_receipts: u64,
}

/// Counts of a run (written as `manifest.json`). Deterministic: no timings.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Manifest {
    /// Seed.
    pub seed: u64,
    /// People.
    pub persons: u64,
    /// First year of history.
    pub start_year: i32,
    /// Years of history.
    pub years: u32,
    /// Facilities in the region.
    pub facilities: u64,
    /// Users in the region.
    pub users: u64,
    /// Insurers in the region.
    pub insurers: u64,
    /// Source patients (facility, local id) over all facilities.
    pub source_patients: u64,
    /// Encounters.
    pub encounters: u64,
    /// FHIR collection Bundles (5情報).
    pub fhir_collection_bundles: u64,
    /// FHIR 診療情報提供書 Bundles.
    pub fhir_referral_bundles: u64,
    /// Of those, with a 退院時サマリー attached.
    pub fhir_discharge_summaries: u64,
    /// FHIR 健康診断結果報告書 Bundles.
    pub fhir_checkup_bundles: u64,
    /// SS-MIX2 files.
    pub ssmix2_files: u64,
    /// UKE files.
    pub uke_files: u64,
    /// UKE receipts.
    pub uke_receipts: u64,
    /// Source patients with each kind of noise.
    pub noise: BTreeMap<String, u64>,
    /// Per facility (by code), only facilities with output.
    pub per_facility: BTreeMap<String, FacilityCounts>,
}

/// What one person contributes to the outputs, serialized on a worker thread.
#[derive(Default)]
struct PersonOut {
    fhir: Vec<(u32, Vec<u8>)>,
    receipts: Vec<(u32, Receipt)>,
    truth: String,
    noise: String,
    counts: Manifest,
    per_facility: Vec<(u32, FacilityCounts)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

fn person_out(region: &Region, opts: &SynthOptions, p: &PersonHistory) -> Result<PersonOut, SynthError> {
    let mut out = PersonOut::default();
    out.counts.encounters = p.care.encounters.len() as u64;
    let pid = p.identity.person_id();
    for sp in &p.registrations {
        let f = region.facility(sp.facility);
        let mut fc = FacilityCounts { source_patients: 1, ..Default::default() };
        out.counts.source_patients += 1;
        for k in &sp.noise {
            *out.counts.noise.entry(k.code().to_owned()).or_insert(0) += 1;
        }
        if opts.formats.truth {
            out.truth.push_str(&format!("{},{},{}\n", f.code, sp.local_id, pid));
            if !sp.noise.is_empty() {
                let kinds: Vec<&str> = sp.noise.iter().map(|k| k.code()).collect();
                out.noise.push_str(&format!("{},{},{},{}\n", f.code, sp.local_id, pid, kinds.join(";")));
            }
        }
        if opts.formats.fhir && f.discloses {
            let mut buf = Vec::new();
            let push = |v: serde_json::Value, buf: &mut Vec<u8>| -> Result<(), SynthError> {
                serde_json::to_writer(&mut *buf, &v).map_err(|e| SynthError::Options(e.to_string()))?;
                buf.push(b'\n');
                Ok(())
            };
            if f.fhir && f.kind != FacilityType::Lab {
                for b in fhir::collection_bundles(region, opts.seed, p, sp) {
                    push(b, &mut buf)?;
                    out.counts.fhir_collection_bundles += 1;
                    fc.fhir_bundles += 1;
                }
            }
            // Documents: referral letters from hospitals and FHIR-capable clinics; the checkup
            // centre's latest report.
            let last_checkup = p.care.encounters.iter().rposition(|e| e.facility == sp.facility && e.checkup.is_some());
            for (i, e) in p.care.encounters.iter().enumerate().filter(|(_, e)| e.facility == sp.facility) {
                if e.referral.is_some()
                    && (f.fhir || f.ssmix2)
                    && let Some(b) = fhir::referral_bundle(region, opts.seed, p, sp, i)
                {
                    if e.referral.as_ref().is_some_and(|r| r.discharge_summary_of.is_some()) {
                        out.counts.fhir_discharge_summaries += 1;
                    }
                    push(b, &mut buf)?;
                    out.counts.fhir_referral_bundles += 1;
                    fc.fhir_bundles += 1;
                }
                if Some(i) == last_checkup
                    && let Some(b) = fhir::checkup_bundle(region, opts.seed, p, sp, i)
                {
                    push(b, &mut buf)?;
                    out.counts.fhir_checkup_bundles += 1;
                    fc.fhir_bundles += 1;
                }
            }
            if !buf.is_empty() {
                out.fhir.push((sp.facility, buf));
            }
        }
        if opts.formats.ssmix2 && f.ssmix2 {
            let root = opts.out_dir.join("ssmix2").join(f.code.as_str());
            for file in ssmix2::patient_files(region, opts.seed, p, sp) {
                let path = root.join(&file.path);
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(io_err(dir))?;
                }
                fs::write(&path, ssmix2::encode(&file.text)).map_err(io_err(&path))?;
                out.counts.ssmix2_files += 1;
                fc.ssmix2_files += 1;
            }
        }
        if opts.formats.uke && f.discloses {
            let receipts = match f.kind {
                FacilityType::Pharmacy => uke::pharmacy_receipts(region, p, sp),
                FacilityType::Hospital | FacilityType::Clinic => uke::medical_receipts(region, p, sp),
                _ => Vec::new(),
            };
            for r in receipts {
                out.counts.uke_receipts += 1;
                fc.uke_receipts += 1;
                out.receipts.push((sp.facility, r));
            }
        }
        out.per_facility.push((sp.facility, fc));
    }
    Ok(out)
}

/// A buffered append-only file: data is kept in memory up to a limit, then appended by
/// open-write-close, so thousands of outputs never hold thousands of descriptors.
struct Spool {
    path: PathBuf,
    buf: Vec<u8>,
}

const SPOOL_LIMIT: usize = 64 * 1024;

impl Spool {
    fn flush(&mut self) -> Result<(), SynthError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io_err(&self.path))?;
        f.write_all(&self.buf).map_err(io_err(&self.path))?;
        self.buf.clear();
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), SynthError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPOOL_LIMIT { self.flush() } else { Ok(()) }
    }
}

struct UkeFile {
    spool: Spool,
    receipts: u64,
    ho_ko: u64,
    points: u64,
}

struct Writer {
    /// Bytes appended since the last full flush: an upper bound of what the buffers hold.
    pending: usize,
    fhir: BTreeMap<u32, Spool>,
    uke: BTreeMap<(u32, u32, u8, UkeKind), UkeFile>,
    truth: Option<Spool>,
    noise: Option<Spool>,
    fhir_dir: PathBuf,
    uke_dir: PathBuf,
}

impl Writer {
    /// Flushes every buffer once they may hold more than `limit` bytes together, so memory
    /// stays bounded even with a hundred thousand small UKE files open for appending.
    fn bound_memory(&mut self, limit: usize) -> Result<(), SynthError> {
        if self.pending < limit {
            return Ok(());
        }
        for s in self.fhir.values_mut() {
            s.flush()?;
        }
        for f in self.uke.values_mut() {
            f.spool.flush()?;
        }
        if let Some(t) = &mut self.truth {
            t.flush()?;
        }
        if let Some(n) = &mut self.noise {
            n.flush()?;
        }
        self.pending = 0;
        Ok(())
    }

    fn take(&mut self, region: &Region, out: PersonOut) -> Result<(), SynthError> {
        self.pending += out.fhir.iter().map(|(_, b)| b.len()).sum::<usize>() + out.truth.len() + out.noise.len();
        self.pending += out
            .receipts
            .iter()
            .map(|(_, r)| r.re_rest.len() + r.lines.iter().map(|l| l.len() + 2).sum::<usize>())
            .sum::<usize>();
        for (f, bytes) in out.fhir {
            let path = self.fhir_dir.join(format!("{}.ndjson", region.facility(f).code));
            self.fhir.entry(f).or_insert_with(|| Spool { path, buf: Vec::new() }).write(&bytes)?;
        }
        for (f, r) in out.receipts {
            let fac = region.facility(f);
            let key = (f, r.month, r.reviewer, r.kind);
            let file = match self.uke.entry(key) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let dir = self.uke_dir.join(fac.code.as_str());
                    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                    let path = dir.join(format!("{}_{}_{}.UKE", r.month, r.reviewer, r.kind.tag()));
                    let mut spool = Spool { path, buf: Vec::new() };
                    spool.write(&uke::encode_lines(&[uke::header(fac, r.kind, r.reviewer, r.month)]))?;
                    v.insert(UkeFile { spool, receipts: 0, ho_ko: 0, points: 0 })
                }
            };
            file.receipts += 1;
            file.ho_ko += r.ho_ko;
            file.points += r.points;
            let mut lines = Vec::with_capacity(r.lines.len() + 1);
            lines.push(format!("RE,{},{}", file.receipts, r.re_rest));
            lines.extend(r.lines);
            file.spool.write(&uke::encode_lines(&lines))?;
        }
        if let Some(t) = &mut self.truth {
            t.write(out.truth.as_bytes())?;
        }
        if let Some(n) = &mut self.noise {
            n.write(out.noise.as_bytes())?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, SynthError> {
        for s in self.fhir.values_mut() {
            s.flush()?;
        }
        let files = self.uke.len() as u64;
        for file in self.uke.values_mut() {
            let mut tail = uke::encode_lines(&[uke::footer(file.ho_ko, file.points)]);
            tail.push(0x1A);
            file.spool.write(&tail)?;
            file.spool.flush()?;
        }
        if let Some(t) = &mut self.truth {
            t.flush()?;
        }
        if let Some(n) = &mut self.noise {
            n.flush()?;
        }
        Ok(files)
    }
}

fn merge(total: &mut Manifest, per_facility: &mut BTreeMap<u32, FacilityCounts>, out: &PersonOut) {
    let c = &out.counts;
    total.source_patients += c.source_patients;
    total.encounters += c.encounters;
    total.fhir_collection_bundles += c.fhir_collection_bundles;
    total.fhir_referral_bundles += c.fhir_referral_bundles;
    total.fhir_discharge_summaries += c.fhir_discharge_summaries;
    total.fhir_checkup_bundles += c.fhir_checkup_bundles;
    total.ssmix2_files += c.ssmix2_files;
    total.uke_receipts += c.uke_receipts;
    for (k, v) in &c.noise {
        *total.noise.entry(k.clone()).or_insert(0) += v;
    }
    for (f, fc) in &out.per_facility {
        let e = per_facility.entry(*f).or_default();
        e.source_patients += fc.source_patients;
        e.fhir_bundles += fc.fhir_bundles;
        e.ssmix2_files += fc.ssmix2_files;
        e.uke_receipts += fc.uke_receipts;
    }
}

/// Blocks generated per worker per round: enough to amortize thread start-up, small enough to
/// keep memory bounded.
const BLOCKS_PER_WORKER: u64 = 64;

/// Output held in memory before every buffer is flushed.
const WRITE_BUFFER_LIMIT: usize = 192 * 1024 * 1024;

/// Generates every output of a run into `opts.out_dir` and returns the manifest.
pub fn generate(opts: &SynthOptions, progress: &dyn Progress) -> Result<Manifest, SynthError> {
    if opts.years == 0 || opts.years > 20 {
        return Err(SynthError::Options(format!("years must be 1 to 20, not {}", opts.years)));
    }
    if !(2020..=2035).contains(&opts.start_year) {
        return Err(SynthError::Options(format!(
            "start year must be 2020 to 2035 (JP-CLINS Bundle identifiers), not {}",
            opts.start_year
        )));
    }
    let out_dir = &opts.out_dir;
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    for sub in ["fhir", "ssmix2", "uke", "truth"] {
        let d = out_dir.join(sub);
        if d.exists() {
            fs::remove_dir_all(&d).map_err(io_err(&d))?;
        }
    }
    progress.set_message("地域を生成しています");
    let region = crate::region(opts.seed, opts.persons);
    let region_path = out_dir.join("region.json");
    let region_json = serde_json::to_vec_pretty(&region).map_err(|e| SynthError::Options(e.to_string()))?;
    fs::write(&region_path, region_json).map_err(io_err(&region_path))?;
    let fhir_dir = out_dir.join("fhir");
    let uke_dir = out_dir.join("uke");
    let truth_dir = out_dir.join("truth");
    for d in [&fhir_dir, &uke_dir, &truth_dir] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let mut truth = None;
    let mut noise = None;
    if opts.formats.truth {
        let mut t = Spool { path: truth_dir.join("source_patients.csv"), buf: Vec::new() };
        t.write(b"facility,local_id,person\n")?;
        truth = Some(t);
        let mut n = Spool { path: truth_dir.join("noise.csv"), buf: Vec::new() };
        n.write(b"facility,local_id,person,noise\n")?;
        noise = Some(n);
    }
    let mut writer =
        Writer { pending: 0, fhir: BTreeMap::new(), uke: BTreeMap::new(), truth, noise, fhir_dir, uke_dir };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    } else {
        opts.threads
    };
    let blocks = opts.persons.div_ceil(person::BLOCK);
    let mut manifest = Manifest {
        seed: opts.seed,
        persons: opts.persons,
        start_year: opts.start_year,
        years: opts.years,
        facilities: region.facilities.len() as u64,
        users: region.users.len() as u64,
        insurers: region.insurers.len() as u64,
        ..Default::default()
    };
    let mut per_facility: BTreeMap<u32, FacilityCounts> = BTreeMap::new();
    progress.set_message("患者と診療記録を生成しています");
    let round = BLOCKS_PER_WORKER * threads as u64;
    let mut next = 0u64;
    while next < blocks {
        let end = (next + round).min(blocks);
        let chunks: Vec<(u64, u64)> = (0..threads as u64)
            .map(|t| {
                let per = (end - next).div_ceil(threads as u64);
                let a = next + t * per;
                (a.min(end), (a + per).min(end))
            })
            .filter(|(a, b)| a < b)
            .collect();
        let results: Vec<Result<Vec<PersonOut>, SynthError>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|(a, b)| {
                    let region = &region;
                    s.spawn(move || -> Result<Vec<PersonOut>, SynthError> {
                        let mut v = Vec::new();
                        for block in *a..*b {
                            for p in block_people(region, opts, block) {
                                v.push(person_out(region, opts, &p)?);
                            }
                            progress.inc((person::BLOCK).min(opts.persons.saturating_sub(block * person::BLOCK)));
                        }
                        Ok(v)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(SynthError::Options("a worker thread panicked".into()))))
                .collect()
        });
        for r in results {
            for out in r? {
                merge(&mut manifest, &mut per_facility, &out);
                writer.take(&region, out)?;
            }
        }
        writer.bound_memory(WRITE_BUFFER_LIMIT)?;
        next = end;
    }
    progress.set_message("ファイルを書き出しています");
    manifest.uke_files = writer.finish()?;
    for (f, mut fc) in per_facility {
        let fac = region.facility(f);
        fc.code = fac.code.to_string();
        fc.name = fac.name.clone();
        fc.kind = fac.kind.code().to_owned();
        manifest.per_facility.insert(fc.code.clone(), fc);
    }
    for k in NoiseKind::ALL {
        manifest.noise.entry(k.code().to_owned()).or_insert(0);
    }
    let mpath = out_dir.join("manifest.json");
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| SynthError::Options(e.to_string()))?;
    fs::write(&mpath, bytes).map_err(io_err(&mpath))?;
    Ok(manifest)
}
