//! Orders and results: OML-01 (ServiceRequest, Specimen), OML-11 (Observation with JLAC10 codes,
//! DiagnosticReport, Specimen), OMG-01/02/03 (ServiceRequest), OMG-11/12 (ImagingStudy) and
//! OMG-13 (DiagnosticReport with Observations), plus the OBX → Observation rule they share.

use serde_json::{Map, Value as Json, json};

use super::types::{codeable, fhir_datetime, number, practitioner_ref, quantity, system_uri};
use super::{Ctx, group, last_before, profile, put, put_str};
use crate::ProblemKind;
use crate::hl7::{Message, Segment};

/// Which Observation profile an OBX maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ObsKind {
    /// Body measurements and other patient facts (ADT-00), order-supporting facts (OMG).
    Common,
    /// A specimen test result (OML-11).
    Lab,
}

/// Links an Observation to what it belongs to.
#[derive(Debug, Clone, Default)]
pub(super) struct ObsContext {
    pub based_on: Option<Json>,
    pub part_of: Option<Json>,
    pub specimen: Option<Json>,
    pub effective: Option<String>,
}

/// OBX → Observation. Returns the logical id, or `None` when the OBX has no item code.
pub(super) fn observation(
    ctx: &mut Ctx<'_>,
    _msg: &Message<'_>,
    obx: &Segment<'_>,
    kind: ObsKind,
    link: Option<&ObsContext>,
) -> Option<String> {
    let code = codeable(obx.get(3), &ctx.facility);
    let Some(code) = code else {
        ctx.warn(obx, Some(3), ProblemKind::MissingField, "OBX-3 検査項目がありません");
        return None;
    };
    let mut o = Map::new();
    o.insert(
        "meta".into(),
        profile(if kind == ObsKind::Lab { "JP_Observation_LabResult" } else { "JP_Observation_Common" }),
    );
    if let Some(b) = link.and_then(|l| l.based_on.clone()) {
        o.insert("basedOn".into(), json!([b]));
    }
    if let Some(p) = link.and_then(|l| l.part_of.clone()) {
        o.insert("partOf".into(), json!([p]));
    }
    let status = match obx.get(11).comp(1).text().as_ref() {
        "F" | "" => "final",
        "C" => "corrected",
        "P" | "R" | "S" => "preliminary",
        "X" | "D" | "W" => "cancelled",
        "I" | "O" => "registered",
        other => {
            ctx.warn(
                obx,
                Some(11),
                ProblemKind::InvalidValue,
                format!("OBX-11 検査結果状態 {other:?} を解釈できません"),
            );
            "unknown"
        }
    };
    o.insert("status".into(), json!(status));
    let code_str = obx.get(3).comp(1).text().into_owned();
    let category = if kind == ObsKind::Lab {
        // JP_Observation_LabResult: `Observation.category:laboratory` (1..1) fixes
        // coding.system = JP_SimpleObservationCategory_CS and code = laboratory.
        json!({"coding": [{"system": SIMPLE_OBSERVATION_CATEGORY, "code": "laboratory", "display": "検体検査"}]})
    } else if code_str.starts_with("9N0") {
        // JLAC10 9N001 身長, 9N006 体重 …: the guide sets vital-signs for these.
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]})
    } else {
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]})
    };
    o.insert("category".into(), json!([category]));
    o.insert("code".into(), code);
    o.insert("subject".into(), ctx.patient_ref.clone());
    let effective = obx.text(14).and_then(|d| fhir_datetime(&d)).or_else(|| link.and_then(|l| l.effective.clone()));
    put_str(&mut o, "effectiveDateTime", effective);
    let vt = obx.get(2).comp(1).text().into_owned();
    let raw_values = obx.get(5).reps();
    let first = raw_values.first().copied();
    let value_text = first.and_then(|v| v.text_opt());
    if let (Some(v), Some(text)) = (first, value_text.clone()) {
        match vt.as_str() {
            "NM" => match quantity(&text, obx.get(6), &ctx.facility)
                .or_else(|| number(&text).map(|n| json!({"value": n})))
            {
                Some(q) => {
                    o.insert("valueQuantity".into(), q);
                }
                None => {
                    ctx.warn(
                        obx,
                        Some(5),
                        ProblemKind::InvalidValue,
                        format!("OBX-5 結果値 {text:?} は数値（NM）ではありません（文字列として登録）"),
                    );
                    o.insert("valueString".into(), json!(text));
                }
            },
            "CWE" | "CE" | "CNE" => {
                put(&mut o, "valueCodeableConcept", codeable(v, &ctx.facility));
            }
            "TS" | "DTM" | "DT" => match fhir_datetime(&text) {
                Some(d) => {
                    o.insert("valueDateTime".into(), json!(d));
                }
                None => {
                    o.insert("valueString".into(), json!(text));
                }
            },
            "XCN" => {
                let name: Vec<String> = [v.comp(2), v.comp(3)].iter().filter_map(|c| c.text_opt()).collect();
                o.insert("valueString".into(), json!(if name.is_empty() { text } else { name.join(" ") }));
            }
            "ZRD" => {
                // SS-MIX2's drug type: a CWE followed by an amount and a unit.
                put(&mut o, "valueCodeableConcept", codeable(v, &ctx.facility));
                if let Some(amount) = v.comp(4).text_opt() {
                    let unit = v.comp(5);
                    let u = unit.sub(2).text_opt().or_else(|| unit.sub(1).text_opt()).unwrap_or_default();
                    o.insert("note".into(), json!([{"text": format!("使用量 {amount}{u}")}]));
                }
            }
            _ => {
                let all: Vec<String> = raw_values.iter().filter_map(|r| r.text_opt()).collect();
                o.insert("valueString".into(), json!(all.join("\n")));
            }
        }
    }
    if let Some(interp) = obx.get(8).comp(1).text_opt() {
        o.insert(
            "interpretation".into(),
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": interp}]}]),
        );
    }
    if let Some(range) = obx.text(7) {
        let mut rr = Map::new();
        if let Some((lo, hi)) = range.split_once('-') {
            let unit = obx.get(6);
            put(&mut rr, "low", quantity(lo, unit, &ctx.facility));
            put(&mut rr, "high", quantity(hi, unit, &ctx.facility));
        }
        rr.insert("text".into(), json!(range));
        o.insert("referenceRange".into(), json!([rr]));
    }
    if let Some(sp) = link.and_then(|l| l.specimen.clone()) {
        o.insert("specimen".into(), sp);
    }
    let sub_id = obx.text(4);
    if let Some(s) = sub_id {
        o.insert("identifier".into(), json!([ctx.business_id(&format!("{}-{s}", obx.index))]));
    }
    Some(ctx.push("Observation", &obx.index.to_string(), obx.index, o))
}

/// JP Core's simple Observation category CodeSystem (`laboratory`, `vital-signs`, …).
const SIMPLE_OBSERVATION_CATEGORY: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS";

fn specimen(ctx: &mut Ctx<'_>, spm: &Segment<'_>) -> String {
    let mut s = Map::new();
    s.insert("meta".into(), profile("JP_Specimen"));
    if let Some(id) = spm.comp_text(2, 1) {
        s.insert("identifier".into(), json!([ctx.business_id(&id)]));
    }
    match codeable(spm.get(4), &ctx.facility) {
        Some(t) => {
            // `023^血清^JC10`: the JLAC10 material code (see `types::jlac10_system`).
            s.insert("type".into(), t);
        }
        None => ctx.warn(spm, Some(4), ProblemKind::MissingField, "SPM-4 検体タイプがありません"),
    }
    s.insert("subject".into(), ctx.patient_ref.clone());
    let mut coll = Map::new();
    put_str(&mut coll, "collectedDateTime", spm.text(17).and_then(|d| fhir_datetime(&d)));
    put(&mut coll, "bodySite", codeable(spm.get(8), &ctx.facility));
    if !coll.is_empty() {
        s.insert("collection".into(), Json::Object(coll));
    }
    ctx.push("Specimen", &spm.index.to_string(), spm.index, s)
}

fn order_ref(ctx: &Ctx<'_>, no: Option<String>) -> Option<Json> {
    no.map(|n| json!({"type": "ServiceRequest", "identifier": ctx.business_id(&n)}))
}

fn service_request(
    ctx: &mut Ctx<'_>,
    orc: Option<&Segment<'_>>,
    obr: &Segment<'_>,
    category: Option<&str>,
    details: Vec<Json>,
    specimen: Option<Json>,
    supporting: Vec<Json>,
) {
    let mut r = Map::new();
    r.insert("meta".into(), profile("JP_ServiceRequest"));
    let no = obr.comp_text(2, 1).or_else(|| orc.and_then(|o| o.comp_text(2, 1)));
    if let Some(n) = &no {
        r.insert("identifier".into(), json!([ctx.business_id(n)]));
    }
    if let Some(parent) = obr.comp_text(29, 1).or_else(|| orc.and_then(|o| o.comp_text(8, 1)))
        && Some(&parent) != no.as_ref()
    {
        r.insert("basedOn".into(), json!([{"type": "ServiceRequest", "identifier": ctx.business_id(&parent)}]));
    }
    let control = orc.map(|o| o.get(1).comp(1).text().into_owned()).unwrap_or_default();
    let status = match control.as_str() {
        "CA" | "OC" => "revoked",
        "DC" => "revoked",
        "SC" | "CM" => "completed",
        _ => "active",
    };
    r.insert("status".into(), json!(status));
    r.insert("intent".into(), json!(if control == "CH" { "instance-order" } else { "order" }));
    if let Some(c) = category {
        r.insert("category".into(), json!([{"text": c}]));
    }
    match codeable(obr.get(4), &ctx.facility) {
        Some(c) => {
            r.insert("code".into(), c);
        }
        None => ctx.warn(obr, Some(4), ProblemKind::MissingField, "OBR-4 検査項目IDがありません"),
    }
    if !details.is_empty() {
        r.insert("orderDetail".into(), Json::Array(details));
    }
    r.insert("subject".into(), ctx.patient_ref.clone());
    let start = obr.text(7).and_then(|d| fhir_datetime(&d));
    let end = obr.text(8).and_then(|d| fhir_datetime(&d));
    if start.is_some() || end.is_some() {
        let mut p = Map::new();
        put_str(&mut p, "start", start);
        put_str(&mut p, "end", end);
        r.insert("occurrencePeriod".into(), Json::Object(p));
    }
    put_str(&mut r, "authoredOn", orc.and_then(|o| o.text(9)).and_then(|d| fhir_datetime(&d)));
    put(
        &mut r,
        "requester",
        orc.and_then(|o| practitioner_ref(o.get(12), &ctx.facility))
            .or_else(|| practitioner_ref(obr.get(16), &ctx.facility)),
    );
    if !supporting.is_empty() {
        r.insert("supportingInfo".into(), Json::Array(supporting));
    }
    if let Some(s) = specimen {
        r.insert("specimen".into(), json!([s]));
    }
    ctx.push("ServiceRequest", &obr.index.to_string(), obr.index, r);
}

/// OML-01 (OML^O33): Specimen per SPM, ServiceRequest per OBR with the requested items (the
/// OBX lines, which carry no values in an order) as order details.
pub(super) fn oml01(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    let mut current_specimen: Option<Json> = None;
    for seg in &msg.segments {
        match seg.name {
            "SPM" => {
                let id = specimen(ctx, seg);
                current_specimen = Some(json!({"reference": format!("Specimen/{id}")}));
            }
            "OBR" => {
                let orc = last_before(msg, seg.index, "ORC");
                let items: Vec<Json> = group(msg, seg.index, &["OBR", "SPM", "ORC"])
                    .iter()
                    .filter(|s| s.name == "OBX")
                    .filter_map(|obx| codeable(obx.get(3), &ctx.facility))
                    .collect();
                service_request(ctx, orc, seg, Some("検体検査"), items, current_specimen.clone(), Vec::new());
            }
            _ => {}
        }
    }
}

/// OML-11 (OUL^R22): Specimen, then per OBR a DiagnosticReport whose results are the
/// Observations of its OBX lines (JLAC10 codes in OBX-3).
pub(super) fn oml11(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    let mut current_specimen: Option<(Json, Option<String>)> = None;
    for seg in &msg.segments {
        match seg.name {
            "SPM" => {
                let id = specimen(ctx, seg);
                let collected = seg.text(17).and_then(|d| fhir_datetime(&d));
                current_specimen = Some((json!({"reference": format!("Specimen/{id}")}), collected));
            }
            "OBR" => {
                report(ctx, msg, seg, ObsKind::Lab, current_specimen.clone(), "JP_DiagnosticReport_LabResult", "LAB")
            }
            _ => {}
        }
    }
}

/// A DiagnosticReport for an OBR and an Observation for each OBX in its group.
fn report(
    ctx: &mut Ctx<'_>,
    msg: &Message<'_>,
    obr: &Segment<'_>,
    kind: ObsKind,
    spec: Option<(Json, Option<String>)>,
    profile_name: &str,
    category: &str,
) {
    let grp = group(msg, obr.index, &["OBR", "SPM"]);
    let orc = grp.iter().find(|s| s.name == "ORC").or_else(|| last_before(msg, obr.index, "ORC"));
    let order_no = obr.comp_text(2, 1).or_else(|| orc.and_then(|o| o.comp_text(2, 1)));
    let based_on = order_ref(ctx, order_no.clone());
    let effective = obr.text(7).and_then(|d| fhir_datetime(&d)).or_else(|| spec.as_ref().and_then(|s| s.1.clone()));
    let link = ObsContext {
        based_on: based_on.clone(),
        part_of: None,
        specimen: spec.as_ref().map(|s| s.0.clone()),
        effective: effective.clone(),
    };
    let mut results = Vec::new();
    for obx in grp.iter().filter(|s| s.name == "OBX") {
        if let Some(id) = observation(ctx, msg, obx, kind, Some(&link)) {
            results.push(json!({"reference": format!("Observation/{id}")}));
        }
    }
    let mut d = Map::new();
    d.insert("meta".into(), profile(profile_name));
    let mut ids = Vec::new();
    if let Some(n) = &order_no {
        ids.push(ctx.business_id(n));
    }
    if let Some(filler) = obr.comp_text(3, 1) {
        ids.push(ctx.business_id(&format!("filler-{filler}")));
    }
    if !ids.is_empty() {
        d.insert("identifier".into(), Json::Array(ids));
    }
    put(&mut d, "basedOn", based_on.map(|b| json!([b])));
    let status = match obr.get(25).comp(1).text().as_ref() {
        "P" | "I" | "S" => "preliminary",
        "C" => "corrected",
        "X" => "cancelled",
        _ => "final",
    };
    d.insert("status".into(), json!(status));
    let mut categories = Vec::new();
    if kind == ObsKind::Lab {
        // JP_DiagnosticReport_LabResult: `DiagnosticReport.category:laboratory` (1..1) has the
        // pattern LOINC LP29693-6 (検体検査).
        categories.push(
            json!({"coding": [{"system": musubi_domain::systems::LOINC, "code": "LP29693-6", "display": "検体検査"}]}),
        );
    }
    categories.push(json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": category}]}));
    d.insert("category".into(), Json::Array(categories));
    match codeable(obr.get(4), &ctx.facility) {
        Some(c) => {
            d.insert("code".into(), c);
        }
        None => {
            ctx.warn(obr, Some(4), ProblemKind::MissingField, "OBR-4 検査項目IDがありません");
            d.insert("code".into(), json!({"text": "不明"}));
        }
    }
    d.insert("subject".into(), ctx.patient_ref.clone());
    let end = obr.text(8).and_then(|x| fhir_datetime(&x));
    match (effective, end) {
        (Some(s), Some(e)) => {
            d.insert("effectivePeriod".into(), json!({"start": s, "end": e}));
        }
        (Some(s), None) => {
            d.insert("effectiveDateTime".into(), json!(s));
        }
        _ => {}
    }
    put_str(&mut d, "issued", obr.text(22).and_then(|x| fhir_datetime(&x)).filter(|x| x.contains('T')));
    if let Some(s) = spec {
        d.insert("specimen".into(), json!([s.0]));
    }
    if !results.is_empty() {
        d.insert("result".into(), Json::Array(results));
    }
    ctx.push("DiagnosticReport", &obr.index.to_string(), obr.index, d);
}

fn omg_category(data_type: &str) -> &'static str {
    match data_type {
        "OMG-01" | "OMG-11" => "放射線検査",
        "OMG-02" | "OMG-12" => "内視鏡検査",
        _ => "生理検査",
    }
}

/// OMG-01/02/03 (OMG^O19): a ServiceRequest per OBR; the OBX lines after an OBR (order
/// information such as weight or the clinical question) become Observations it points to.
pub(super) fn omg_order(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    let category = omg_category(ctx.path.data_type.as_str());
    for obr in msg.segments.iter().filter(|s| s.name == "OBR") {
        let orc = last_before(msg, obr.index, "ORC");
        let order_no = obr.comp_text(2, 1).or_else(|| orc.and_then(|o| o.comp_text(2, 1)));
        let link = ObsContext { based_on: order_ref(ctx, order_no), ..ObsContext::default() };
        let mut supporting = Vec::new();
        for obx in group(msg, obr.index, &["ORC", "OBR"]).iter().filter(|s| s.name == "OBX") {
            if let Some(id) = observation(ctx, msg, obx, ObsKind::Common, Some(&link)) {
                supporting.push(json!({"reference": format!("Observation/{id}")}));
            }
        }
        service_request(ctx, orc, obr, Some(category), Vec::new(), None, supporting);
    }
}

/// OMG-11/12 (OMI^Z23): an ImagingStudy per OBR (with the study UID and accession number of
/// its IPC), and Observations for the performed-procedure details (OBX) that point to it.
pub(super) fn omi(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    for obr in msg.segments.iter().filter(|s| s.name == "OBR") {
        let grp = group(msg, obr.index, &["ORC", "OBR"]);
        let orc = last_before(msg, obr.index, "ORC");
        let ipc = grp.iter().find(|s| s.name == "IPC");
        let (key, id) = ctx.ids("ImagingStudy", &obr.index.to_string());
        let mut s = Map::new();
        s.insert(
            "meta".into(),
            profile(if ctx.path.data_type.as_str() == "OMG-12" {
                "JP_ImagingStudy_Endoscopy"
            } else {
                "JP_ImagingStudy_Radiology"
            }),
        );
        let mut ids = Vec::new();
        if let Some(uid) = ipc.and_then(|i| i.comp_text(3, 1)) {
            ids.push(json!({"system": "urn:dicom:uid", "value": format!("urn:oid:{uid}")}));
        }
        if let Some(acc) = ipc.and_then(|i| i.comp_text(1, 1)) {
            ids.push(json!({
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "system": format!("urn:ssmix2:accession:{}", ctx.facility),
                "value": acc,
            }));
        }
        if !ids.is_empty() {
            s.insert("identifier".into(), Json::Array(ids));
        }
        s.insert("status".into(), json!("available"));
        if let Some(m) = ipc.and_then(|i| i.get(5).comp(1).text_opt()) {
            let sys = ipc.and_then(|i| i.get(5).comp(3).text_opt()).unwrap_or_else(|| "DCM".into());
            s.insert("modality".into(), json!([{"system": system_uri(&sys, &ctx.facility), "code": m}]));
        }
        s.insert("subject".into(), ctx.patient_ref.clone());
        put_str(
            &mut s,
            "started",
            obr.text(7).and_then(|d| fhir_datetime(&d)).or_else(|| obr.text(22).and_then(|d| fhir_datetime(&d))),
        );
        let order_no = obr.comp_text(2, 1).or_else(|| orc.and_then(|o| o.comp_text(2, 1)));
        put(&mut s, "basedOn", order_ref(ctx, order_no).map(|b| json!([b])));
        let mut procedures: Vec<Json> = codeable(obr.get(4), &ctx.facility).into_iter().collect();
        procedures.extend(grp.iter().filter(|x| x.name == "ZE1").filter_map(|z| codeable(z.get(3), &ctx.facility)));
        if !procedures.is_empty() {
            s.insert("procedureCode".into(), Json::Array(procedures));
        }
        ctx.push_with("ImagingStudy", key, id.clone(), obr.index, &mut s);
        let link =
            ObsContext { part_of: Some(json!({"reference": format!("ImagingStudy/{id}")})), ..ObsContext::default() };
        for obx in grp.iter().filter(|x| x.name == "OBX") {
            observation(ctx, msg, obx, ObsKind::Common, Some(&link));
        }
    }
}

/// OMG-13 (ORU^R01): a DiagnosticReport per OBR with an Observation per OBX (ECG findings and
/// measurements).
pub(super) fn oru(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    for obr in msg.segments.iter().filter(|s| s.name == "OBR") {
        report(ctx, msg, obr, ObsKind::Common, None, "JP_DiagnosticReport_Common", "PF");
    }
}
