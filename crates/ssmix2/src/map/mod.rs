//! From one file's bytes to FHIR resources: the checks that decide between landing and
//! quarantine, the logical-id rules, and the dispatch to the mapper of each data type.

mod orders;
mod patient;
mod results;
pub(crate) mod types;

use musubi_domain::FacilityCode;
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::decode::{self, DecodeIssueKind};
use crate::hl7::{LineEnding, Message, Segment};
use crate::order::{self, OrderCheck};
use crate::path::{Condition, StoragePath};
use crate::{
    Collected, MappedResource, Outcome, Problem, ProblemKind, Provenance, Rejected, ResourceRef, Retraction, Severity,
    sha256_hex,
};

/// Namespace of Musubi's SS-MIX2 logical ids (UUID v5). Never change it: ids would change.
const NAMESPACE: Uuid = Uuid::from_bytes(*b"musubi-ssmix2-ns");

/// The logical id for a resource type and identity key: the UUID v5 of `Type/key`.
pub fn logical_id(resource_type: &str, key: &str) -> String {
    Uuid::new_v5(&NAMESPACE, format!("{resource_type}/{key}").as_bytes()).to_string()
}

/// The identity key of a facility's source patient (the guide's `[患者ID].ADT-00`, with the
/// facility in front).
pub(crate) fn patient_key(facility: &FacilityCode, patient_id: &str) -> String {
    format!("{facility}.{patient_id}.ADT-00")
}

/// The logical id of the Patient that ADT-00 gives for this facility and 患者ID; every other
/// resource's subject points to it.
pub fn patient_logical_id(facility: &FacilityCode, patient_id: &str) -> String {
    logical_id("Patient", &patient_key(facility, patient_id))
}

/// The JP Core profile URL of a profile name.
pub(crate) fn profile(name: &str) -> Json {
    json!({ "profile": [format!("http://jpfhir.jp/fhir/core/StructureDefinition/{name}")] })
}

/// The state of one mapping run.
pub(crate) struct Ctx<'p> {
    pub facility: FacilityCode,
    pub path: &'p StoragePath,
    pub file: String,
    id_base: String,
    pub patient_ref: Json,
    pub problems: Vec<Problem>,
    pub out: Vec<MappedResource>,
}

impl<'p> Ctx<'p> {
    fn new(facility: FacilityCode, path: &'p StoragePath) -> Self {
        let p = path;
        let mut id_base =
            format!("{facility}.{}.{}.{}.{}", p.patient_id, p.care_date.as_str(), p.data_type.as_str(), p.order_no);
        // Events without an order (ADT-22, ADT-52 …) are distinct per 発生日時; patient-level
        // snapshots (ADT-00, ADT-61, PPR-01) replace each other.
        if p.has_no_order() && !matches!(p.data_type.as_str(), "ADT-00" | "ADT-61" | "PPR-01") {
            id_base.push('.');
            id_base.push_str(&p.occurred_at);
        }
        let patient_ref = json!({
            "reference": format!("Patient/{}", patient_logical_id(&facility, &p.patient_id)),
            "identifier": {
                "system": format!("{}{facility}", musubi_domain::systems::LOCAL_PATIENT_ID_PREFIX),
                "value": p.patient_id,
            }
        });
        Ctx { facility, path, file: p.relative.clone(), id_base, patient_ref, problems: Vec::new(), out: Vec::new() }
    }

    /// Records a warning located at a segment and field.
    pub fn warn(&mut self, seg: &Segment<'_>, field: Option<u32>, kind: ProblemKind, reason: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Warning,
            kind,
            file: self.file.clone(),
            line: Some(seg.index + 1),
            segment: Some(seg.name.to_owned()),
            field,
            reason: reason.into(),
        });
    }

    /// The key and id a resource of this type from this segment gets.
    pub fn ids(&self, resource_type: &str, suffix: &str) -> (String, String) {
        let key = format!("{}.{resource_type}.{suffix}", self.id_base);
        let id = logical_id(resource_type, &key);
        (key, id)
    }

    /// Adds a resource, setting its id; returns the id.
    pub fn push(
        &mut self,
        resource_type: &'static str,
        suffix: &str,
        seg_index: usize,
        mut resource: Map<String, Json>,
    ) -> String {
        let (key, id) = self.ids(resource_type, suffix);
        self.push_with(resource_type, key, id.clone(), seg_index, &mut resource);
        id
    }

    /// Adds a resource with an explicit key and id.
    pub fn push_with(
        &mut self,
        resource_type: &'static str,
        key: String,
        id: String,
        seg_index: usize,
        resource: &mut Map<String, Json>,
    ) {
        let mut full = Map::new();
        full.insert("resourceType".into(), json!(resource_type));
        full.insert("id".into(), json!(id));
        for (k, v) in std::mem::take(resource) {
            full.insert(k, v);
        }
        self.out.push(MappedResource {
            resource_type,
            id,
            key,
            segment_index: seg_index,
            resource: Json::Object(full),
        });
    }

    /// A facility-qualified business identifier for an order or record number.
    pub fn business_id(&self, value: &str) -> Json {
        json!({
            "system": "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier",
            "value": format!("{}-{value}", self.facility),
        })
    }
}

/// Inserts `key: value` when the value is present.
pub(crate) fn put(m: &mut Map<String, Json>, key: &str, value: Option<Json>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), v);
    }
}

/// Inserts a string when present.
pub(crate) fn put_str(m: &mut Map<String, Json>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), Json::String(v));
    }
}

/// The segments after `start` up to (not including) the next one named in `stop`.
pub(crate) fn group<'m, 'a>(msg: &'m Message<'a>, start: usize, stop: &[&str]) -> &'m [Segment<'a>] {
    let from = (start + 1).min(msg.segments.len());
    let rest = &msg.segments[from..];
    let end = rest.iter().position(|s| stop.contains(&s.name)).unwrap_or(rest.len());
    &rest[..end]
}

/// The last segment named `name` before `index`.
pub(crate) fn last_before<'m, 'a>(msg: &'m Message<'a>, index: usize, name: &str) -> Option<&'m Segment<'a>> {
    msg.segments[..index.min(msg.segments.len())].iter().rev().find(|s| s.name == name)
}

fn problem(
    file: &str,
    severity: Severity,
    kind: ProblemKind,
    line: Option<usize>,
    segment: Option<&str>,
    field: Option<u32>,
    reason: String,
) -> Problem {
    Problem { severity, kind, file: file.to_owned(), line, segment: segment.map(str::to_owned), field, reason }
}

pub(crate) fn collect(facility: FacilityCode, relative_path: &str, bytes: &[u8]) -> Result<Collected, Rejected> {
    let sha256 = sha256_hex(bytes);
    let reject = |problems: Vec<Problem>| Rejected { path: relative_path.to_owned(), sha256: sha256.clone(), problems };
    let path = match StoragePath::parse(relative_path) {
        Ok(p) => p,
        Err(e) => {
            return Err(reject(vec![problem(
                relative_path,
                Severity::Error,
                ProblemKind::Path,
                None,
                None,
                None,
                e.to_string(),
            )]));
        }
    };
    let file = path.relative.clone();
    let mut problems = Vec::new();
    if path.has_short_occurred_at() {
        problems.push(problem(
            &file,
            Severity::Warning,
            ProblemKind::Path,
            None,
            None,
            None,
            "発生日時が 15 桁です（標準は yyyyMMddHHmmssfff の 17 桁）。そのまま受け付けました".into(),
        ));
    }
    let decoded = decode::decode(bytes);
    for i in &decoded.issues {
        let severity = if i.kind == DecodeIssueKind::Malformed { Severity::Error } else { Severity::Warning };
        problems.push(problem(&file, severity, ProblemKind::Encoding, Some(i.line), None, None, i.reason.clone()));
    }
    let msg = match Message::parse(&decoded.text) {
        Ok(m) => m,
        Err(e) => {
            problems.push(problem(
                &file,
                Severity::Error,
                ProblemKind::Syntax,
                Some(1),
                Some("MSH"),
                e.field,
                e.reason,
            ));
            return Err(reject(problems));
        }
    };
    for i in &msg.issues {
        problems.push(problem(
            &file,
            Severity::Warning,
            ProblemKind::Syntax,
            i.segment_index.map(|s| s + 1),
            i.segment.as_deref(),
            i.field,
            i.reason.clone(),
        ));
    }
    if msg.line_ending != LineEnding::Cr {
        let how = match msg.line_ending {
            LineEnding::CrLf => "CR LF",
            LineEnding::Lf => "LF",
            _ => "CR と LF の混在",
        };
        problems.push(problem(
            &file,
            Severity::Warning,
            ProblemKind::Syntax,
            None,
            None,
            None,
            format!("セグメントの終端が CR ではなく {how} です（受け付けました）"),
        ));
    }
    let message_type = msg.message_type();
    let Some(mt) = message_type.clone() else {
        problems.push(problem(
            &file,
            Severity::Error,
            ProblemKind::MissingField,
            Some(1),
            Some("MSH"),
            Some(9),
            "MSH-9 メッセージ型がありません".into(),
        ));
        return Err(reject(problems));
    };
    if !path.data_type.allows_message(&mt) {
        let allowed: Vec<&str> = path.data_type.rows().map(|r| r.message).collect();
        problems.push(problem(
            &file,
            Severity::Error,
            ProblemKind::MessageType,
            Some(1),
            Some("MSH"),
            Some(9),
            format!(
                "MSH-9 メッセージ型 {mt} はデータ種別 {} のメッセージ（{}）ではありません",
                path.data_type,
                allowed.join(", ")
            ),
        ));
        return Err(reject(problems));
    }
    let names: Vec<&str> = msg.segments.iter().map(|s| s.name).collect();
    if let OrderCheck::Broken { first_bad } = order::check(&mt, &names) {
        let name = names.get(first_bad).copied().unwrap_or("");
        problems.push(problem(
            &file,
            Severity::Warning,
            ProblemKind::SegmentOrder,
            Some(first_bad + 1),
            Some(name),
            None,
            format!(
                "セグメント {name}（{} 行目）は {mt} のセグメント順序に合いません。これ以降の {} セグメントのうち対応しないものは変換していません（原本は保存されます）",
                first_bad + 1,
                names.len() - first_bad
            ),
        ));
    }
    let Some(pid) = msg.segment("PID") else {
        problems.push(problem(
            &file,
            Severity::Error,
            ProblemKind::MissingField,
            None,
            Some("PID"),
            None,
            "PID セグメントがありません".into(),
        ));
        return Err(reject(problems));
    };
    let pid3 = pid.get(3).rep(0).comp(1).text_opt();
    match pid3 {
        None => problems.push(problem(
            &file,
            Severity::Warning,
            ProblemKind::MissingField,
            Some(pid.index + 1),
            Some("PID"),
            Some(3),
            "PID-3 患者IDがありません（パスの患者IDを使いました）".into(),
        )),
        Some(id) if id != path.patient_id => problems.push(problem(
            &file,
            Severity::Warning,
            ProblemKind::PatientMismatch,
            Some(pid.index + 1),
            Some("PID"),
            Some(3),
            format!("PID-3 患者ID {id} がパスの患者ID {} と一致しません（パスの患者IDを使いました）", path.patient_id),
        )),
        Some(_) => {}
    }

    let mut ctx = Ctx::new(facility, &path);
    match path.data_type.as_str() {
        "ADT-00" => patient::adt00(&mut ctx, &msg, &mt),
        "ADT-61" => patient::adt61(&mut ctx, &msg),
        "PPR-01" => orders::ppr01(&mut ctx, &msg),
        "OMP-01" | "OMP-02" => orders::rde(&mut ctx, &msg),
        "OMP-11" | "OMP-12" => orders::ras(&mut ctx, &msg),
        "OMD" => orders::omd(&mut ctx, &msg),
        "OML-01" => results::oml01(&mut ctx, &msg),
        "OML-11" => results::oml11(&mut ctx, &msg),
        "OMG-01" | "OMG-02" | "OMG-03" => results::omg_order(&mut ctx, &msg),
        "OMG-11" | "OMG-12" => results::omi(&mut ctx, &msg),
        "OMG-13" => results::oru(&mut ctx, &msg),
        _ => patient::encounter(&mut ctx, &msg, &mt),
    }
    problems.append(&mut ctx.problems);
    if ctx.out.is_empty() && !matches!(path.data_type.as_str(), "ADT-61" | "PPR-01") {
        problems.push(problem(
            &file,
            Severity::Error,
            ProblemKind::MissingField,
            None,
            None,
            None,
            format!("データ種別 {} として変換できるセグメントがありません", path.data_type),
        ));
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(reject(problems));
    }
    let source_key = format!(
        "{facility}.{}.{}.{}.{}.{}",
        path.patient_id,
        path.care_date.as_str(),
        path.data_type.as_str(),
        path.order_no,
        path.occurred_at
    );
    let provenance = Provenance {
        facility,
        path: file,
        sha256,
        source_key: source_key.clone(),
        data_type: path.data_type.as_str().to_owned(),
        occurred_at: path.occurred_at_fhir(),
        message_type,
        message_control_id: msg.control_id(),
    };
    let outcome = match path.condition {
        Condition::Valid => Outcome::Resources(ctx.out),
        Condition::Cancelled => Outcome::Retraction(Retraction {
            source_key,
            targets: ctx
                .out
                .iter()
                .map(|r| ResourceRef { resource_type: r.resource_type.to_owned(), id: r.id.clone() })
                .collect(),
        }),
    };
    Ok(Collected { provenance, outcome, problems })
}
