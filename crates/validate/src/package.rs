//! Reads the verbatim FHIR NPM packages embedded in the binary (`include_bytes!` of
//! `reference/packages/*.tgz`): the StructureDefinition snapshots and the JP-CLINS lab
//! CodeSystems. Only the fields the validator uses are deserialized.

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

/// JP-CLINS 1.5.2 (snapshot package).
pub(crate) static JP_CLINS: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/packages/jp-clins.r4-1.5.2-snap.tgz"));
/// JP Core 1.1.2, `-url` variant (the one JP-CLINS depends on).
pub(crate) static JP_CORE: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/packages/jp-core.r4-1.1.2-url.tgz"));
/// 健康診断結果報告書 (eCheckupReport).
pub(crate) static JP_ECHECKUP: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/packages/jp-eCheckupReport.r4.tgz"));

/// One StructureDefinition, reduced to what compiling a profile needs.
#[derive(Debug, Deserialize)]
pub(crate) struct StructureDefinition {
    pub url: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub kind: String,
    pub snapshot: Option<Snapshot>,
}

/// The snapshot element list.
#[derive(Debug, Deserialize)]
pub(crate) struct Snapshot {
    pub element: Vec<ElementDefinition>,
}

/// One snapshot element: cardinality, types, slicing and fixed/pattern values.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ElementDefinition {
    pub id: String,
    pub path: String,
    pub min: Option<u32>,
    pub max: Option<String>,
    pub base: Option<ElementBase>,
    #[serde(rename = "type", default)]
    pub types: Vec<ElementType>,
    pub content_reference: Option<String>,
    pub slicing: Option<ElementSlicing>,
    // The fixed[x] / pattern[x] variants that occur in the packages (and a few more).
    fixed_uri: Option<Value>,
    fixed_string: Option<Value>,
    fixed_code: Option<Value>,
    fixed_decimal: Option<Value>,
    fixed_boolean: Option<Value>,
    fixed_coding: Option<Value>,
    fixed_codeable_concept: Option<Value>,
    fixed_identifier: Option<Value>,
    fixed_canonical: Option<Value>,
    pattern_string: Option<Value>,
    pattern_uri: Option<Value>,
    pattern_code: Option<Value>,
    pattern_coding: Option<Value>,
    pattern_codeable_concept: Option<Value>,
    pattern_canonical: Option<Value>,
    pattern_identifier: Option<Value>,
    pattern_boolean: Option<Value>,
}

impl ElementDefinition {
    /// The fixed or pattern value, if any, and whether it is a pattern.
    pub fn fixed_or_pattern(&self) -> Option<(bool, &Value)> {
        let fixed = [
            &self.fixed_uri,
            &self.fixed_string,
            &self.fixed_code,
            &self.fixed_decimal,
            &self.fixed_boolean,
            &self.fixed_coding,
            &self.fixed_codeable_concept,
            &self.fixed_identifier,
            &self.fixed_canonical,
        ];
        if let Some(v) = fixed.into_iter().flatten().next() {
            return Some((false, v));
        }
        let pattern = [
            &self.pattern_string,
            &self.pattern_uri,
            &self.pattern_code,
            &self.pattern_coding,
            &self.pattern_codeable_concept,
            &self.pattern_canonical,
            &self.pattern_identifier,
            &self.pattern_boolean,
        ];
        pattern.into_iter().flatten().next().map(|v| (true, v))
    }
}

/// The base cardinality (decides whether the JSON form is an array).
#[derive(Debug, Deserialize)]
pub(crate) struct ElementBase {
    pub min: Option<u32>,
    pub max: Option<String>,
}

/// One allowed type of an element.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ElementType {
    pub code: String,
    #[serde(default)]
    pub profile: Vec<String>,
}

/// How an element is sliced.
#[derive(Debug, Deserialize)]
pub(crate) struct ElementSlicing {
    #[serde(default)]
    pub discriminator: Vec<Discriminator>,
    pub rules: Option<String>,
}

/// One slicing discriminator.
#[derive(Debug, Deserialize)]
pub(crate) struct Discriminator {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
}

/// A CodeSystem with its (possibly nested) concepts.
#[derive(Debug, Deserialize)]
pub(crate) struct CodeSystem {
    pub url: String,
    #[serde(default)]
    pub concept: Vec<Concept>,
}

/// One concept of a CodeSystem.
#[derive(Debug, Deserialize)]
pub(crate) struct Concept {
    pub code: String,
    pub display: Option<String>,
    #[serde(default)]
    pub designation: Vec<Designation>,
    #[serde(default)]
    pub concept: Vec<Concept>,
}

/// A designation (used for the Japanese names of the core lab items).
#[derive(Debug, Deserialize)]
pub(crate) struct Designation {
    pub language: Option<String>,
    pub value: String,
}

/// Why a package could not be read. The packages are compiled in, so this only happens if the
/// embedded bytes are corrupt; the validator then works with what it could read.
#[derive(Debug)]
pub(crate) struct PackageError {
    pub file: String,
    pub reason: String,
}

/// Calls `f(file name, bytes)` for each file in the package whose name passes `want`.
pub(crate) fn for_each_file(
    tgz: &[u8],
    want: impl Fn(&str) -> bool,
    mut f: impl FnMut(&str, &[u8]),
) -> Result<(), PackageError> {
    let err = |file: &str, e: std::io::Error| PackageError { file: file.to_owned(), reason: e.to_string() };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let entries = archive.entries().map_err(|e| err("<archive>", e))?;
    let mut buf = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| err("<entry>", e))?;
        let name = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => return Err(err("<path>", e)),
        };
        let file = name.rsplit('/').next().unwrap_or(&name).to_owned();
        if !want(&file) {
            continue;
        }
        buf.clear();
        entry.read_to_end(&mut buf).map_err(|e| err(&file, e))?;
        f(&file, &buf);
    }
    Ok(())
}

/// All StructureDefinitions of a package, by file name order of the archive.
pub(crate) fn structure_definitions(tgz: &[u8], errors: &mut Vec<PackageError>) -> Vec<StructureDefinition> {
    let mut out = Vec::new();
    let res = for_each_file(
        tgz,
        |f| f.starts_with("StructureDefinition-") && f.ends_with(".json"),
        |file, bytes| match serde_json::from_slice::<StructureDefinition>(bytes) {
            Ok(sd) => out.push(sd),
            Err(e) => errors.push(PackageError { file: file.to_owned(), reason: e.to_string() }),
        },
    );
    if let Err(e) = res {
        errors.push(e);
    }
    out
}

/// The CodeSystems of a package whose canonical URL is in `urls`.
pub(crate) fn code_systems(tgz: &[u8], urls: &[&str]) -> HashMap<String, CodeSystem> {
    let mut out = HashMap::new();
    let _ = for_each_file(
        tgz,
        |f| f.starts_with("CodeSystem-") && f.ends_with(".json"),
        |_, bytes| {
            if let Ok(cs) = serde_json::from_slice::<CodeSystem>(bytes)
                && urls.contains(&cs.url.as_str())
            {
                out.insert(cs.url.clone(), cs);
            }
        },
    );
    out
}
