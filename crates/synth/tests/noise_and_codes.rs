//! Registration noise appears at about the configured rates (detected independently by
//! comparing each registration with the person's true identity), and every code the
//! generator uses from a real master is in that master with the same name.

use musubi_synth::noise::NoiseRates;
use musubi_synth::{SynthOptions, persons, region};

fn reference(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../reference/{}", env!("CARGO_MANIFEST_DIR"), path)).unwrap()
}

fn is_halfwidth_kana(s: &str) -> bool {
    s.chars().any(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c))
}

#[test]
fn noise_kinds_appear_at_about_the_configured_rates() {
    let mut opts = SynthOptions::new(6000, 77, std::env::temp_dir());
    opts.noise = NoiseRates {
        halfwidth_kana: 0.10,
        birth_typo: 0.02,
        missing_phone: 0.15,
        missing_kana: 0.03,
        ..NoiseRates::default()
    };
    let r = region(opts.seed, opts.persons);
    let (mut regs, mut half, mut typo, mut with_phone, mut no_phone, mut no_kana) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut variant_eligible, mut variant_folded) = (0u64, 0u64);
    let (mut moved, mut stale) = (0u64, 0u64);
    for p in persons(&r, &opts) {
        let id = &p.identity;
        for sp in &p.registrations {
            regs += 1;
            if sp.family_kana.is_none() {
                no_kana += 1;
            } else if is_halfwidth_kana(sp.family_kana.as_deref().unwrap_or("")) {
                half += 1;
            }
            if sp.birth != id.birth {
                typo += 1;
            }
            if id.phone().is_some() {
                with_phone += 1;
                if sp.phone.is_none() {
                    no_phone += 1;
                }
            }
            let legal = id.name_on(sp.last_visit);
            if musubi_synth::names::fold_variants(&legal.family) != legal.family
                && sp.family == musubi_synth::names::fold_variants(&legal.family)
            {
                variant_folded += 1;
            }
            if musubi_synth::names::fold_variants(&legal.family) != legal.family {
                variant_eligible += 1;
            }
            if id.address_on(sp.first_visit) != id.address_on(sp.last_visit) {
                moved += 1;
                if sp.address == *id.address_on(sp.first_visit) {
                    stale += 1;
                }
            }
            // The recorded kinds agree with what is seen.
            assert_eq!(sp.birth != id.birth, sp.noise.contains(&musubi_synth::NoiseKind::BirthTypo));
        }
    }
    let rate = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let near = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() <= want * 0.35 + 0.005, "{what}: {got:.4} vs configured {want}")
    };
    assert!(regs > 10_000, "{regs} registrations");
    near(rate(half, regs - no_kana), 0.10, "half-width kana");
    near(rate(typo, regs), 0.02, "birth-date typos");
    near(rate(no_phone, with_phone), 0.15, "missing phone");
    near(rate(no_kana, regs), 0.03, "missing kana");
    assert!(variant_eligible > 50, "{variant_eligible} registrations of variant-kanji names");
    near(rate(variant_folded, variant_eligible), 0.5, "variant kanji folded");
    assert!(moved > 30, "{moved} registrations across a move");
    near(rate(stale, moved), 0.4, "stale address");
}

#[test]
fn receipt_disease_codes_are_in_the_master_with_their_names() {
    let master = reference("code-masters/receipt_disease_master_masterB.csv");
    let table: std::collections::BTreeMap<&str, &str> =
        master.lines().filter_map(|l| l.trim_end_matches('\r').split_once(',')).collect();
    for d in musubi_synth::codes::DISEASES {
        assert_eq!(table.get(d.receipt), Some(&d.name), "{} {}", d.receipt, d.name);
    }
}

#[test]
fn jfagy_codes_are_in_the_master_with_their_names() {
    let master = reference("jfagy/JFAGY_J9FN_20250401_R01-utf8.csv");
    for a in musubi_synth::codes::ALLERGENS.iter().filter(|a| a.category != "medication") {
        let needle = format!("\"{}\",\"{}\"", a.code, a.name);
        assert!(master.contains(&needle), "{needle}");
    }
    for a in musubi_synth::codes::ALLERGENS.iter().filter(|a| a.category == "medication") {
        assert_eq!(musubi_synth::codes::drug(a.code).key, a.code, "drug allergy {} names a drug", a.name);
    }
}

#[test]
fn jlac10_codes_are_in_the_jp_clins_code_systems() {
    // The FSH sources of the JP-CLINS core and infection CodeSystems list every code.
    let core = reference("jp-clins/fsh-codesystems/JP_CLINS_CodeSystem_JLAC10_CoreLabo.fsh");
    let infection = reference("jp-clins/fsh-codesystems/JP_CLINS_CodeSystem_JLAC10_InfectionLabo.fsh");
    for l in musubi_synth::codes::LABS {
        match l.group {
            musubi_synth::codes::LabGroup::Core => {
                assert!(core.contains(&format!("#{}", l.jlac10)) || core.contains(l.jlac10), "{} {}", l.key, l.jlac10)
            }
            musubi_synth::codes::LabGroup::Infection => assert!(infection.contains(l.jlac10), "{} {}", l.key, l.jlac10),
            musubi_synth::codes::LabGroup::Other => assert_eq!(l.jlac10.len(), 17),
        }
    }
}
