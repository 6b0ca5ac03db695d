//! Patient-level data types: ADT-00 (Patient, Coverage, AllergyIntolerance, Observation),
//! ADT-61 (AllergyIntolerance) and the admission/discharge/transfer events (Encounter).

use musubi_domain::{InsuranceId, InsurerNumber, systems};
use serde_json::{Map, Value as Json, json};

use super::types::{self, addresses, codeable, fhir_datetime, human_names, practitioner_ref, telecoms};
use super::{Ctx, last_before, patient_key, profile, put, put_str, results};
use crate::ProblemKind;
use crate::hl7::{Message, Segment};

/// ADT-00: the source patient, its insurance, allergies and body measurements.
pub(super) fn adt00(ctx: &mut Ctx<'_>, msg: &Message<'_>, message_type: &str) {
    let Some(pid) = msg.segment("PID") else { return };
    // Insurance first: the 被保険者個人識別子 goes on the Patient too.
    let mut insurance_ids = Vec::new();
    for in1 in msg.segments.iter().filter(|s| s.name == "IN1") {
        if let Some(id) = coverage(ctx, in1) {
            insurance_ids.push(id);
        }
    }
    let mut p = Map::new();
    p.insert("meta".into(), profile("JP_Patient"));
    let mut identifiers = vec![json!({
        "system": format!("{}{}", systems::LOCAL_PATIENT_ID_PREFIX, ctx.facility),
        "value": ctx.path.patient_id,
    })];
    for id in &insurance_ids {
        identifiers.push(json!({"system": systems::INSURANCE_MEMBER_ID, "value": id.to_string()}));
    }
    p.insert("identifier".into(), Json::Array(identifiers));
    let deleted = message_type == "ADT^A23";
    p.insert("active".into(), json!(!deleted));
    if let (true, Some(msh)) = (deleted, msg.segments.first()) {
        ctx.warn(
            msh,
            Some(9),
            ProblemKind::InvalidValue,
            "患者基本情報の削除（ADT^A23）のため、患者を active=false として登録しました",
        );
    }
    let names = human_names(pid.get(5));
    if names.is_empty() {
        ctx.warn(pid, Some(5), ProblemKind::MissingField, "PID-5 患者氏名がありません");
    } else {
        if !pid.get(5).reps().iter().any(|r| r.comp(8).text() == "P") {
            ctx.warn(pid, Some(5), ProblemKind::MissingField, "PID-5 カナ氏名（名前表記 P）がありません");
        }
        p.insert("name".into(), Json::Array(names));
    }
    let mut telecom = telecoms(pid.get(13), Some("home"));
    telecom.extend(telecoms(pid.get(14), Some("work")));
    if !telecom.is_empty() {
        p.insert("telecom".into(), Json::Array(telecom));
    }
    match pid.text(8) {
        Some(g) => match types::gender(&g) {
            Some(x) => {
                p.insert("gender".into(), json!(x));
            }
            None => ctx.warn(
                pid,
                Some(8),
                ProblemKind::InvalidValue,
                format!("PID-8 性別 {g:?} は表 0001 のコードではありません"),
            ),
        },
        None => ctx.warn(pid, Some(8), ProblemKind::MissingField, "PID-8 性別がありません"),
    }
    match pid.text(7) {
        Some(b) => match types::fhir_date(&b) {
            Some(d) if b.len() >= 8 => {
                p.insert("birthDate".into(), json!(d));
            }
            _ => {
                ctx.warn(pid, Some(7), ProblemKind::InvalidValue, format!("PID-7 生年月日 {b:?} が日付ではありません"))
            }
        },
        None => ctx.warn(pid, Some(7), ProblemKind::MissingField, "PID-7 生年月日がありません"),
    }
    let addr = addresses(pid.get(11));
    if !addr.is_empty() {
        p.insert("address".into(), Json::Array(addr));
    }
    if let Some(db1) = msg.segment("DB1")
        && db1.text(4).as_deref() == Some("Y")
    {
        {
            let mut cc = Map::new();
            if let Some(code) = db1.text(2) {
                cc.insert(
                    "coding".into(),
                    json!([{"system": "http://terminology.hl7.org/CodeSystem/v2-0334", "code": code}]),
                );
            }
            cc.insert("text".into(), json!("身体障害あり"));
            p.insert(
                "extension".into(),
                json!([{"url": "http://hl7.org/fhir/StructureDefinition/patient-disability", "valueCodeableConcept": cc}]),
            );
        }
    }
    let contacts: Vec<Json> =
        msg.segments.iter().filter(|s| s.name == "NK1").filter_map(|nk1| contact(ctx, nk1)).collect();
    if !contacts.is_empty() {
        p.insert("contact".into(), Json::Array(contacts));
    }
    let key = patient_key(&ctx.facility, &ctx.path.patient_id);
    let id = super::logical_id("Patient", &key);
    // The Patient goes first so a caller applying resources in order creates it before the
    // resources that reference it.
    let coverage_and_rest = std::mem::take(&mut ctx.out);
    ctx.push_with("Patient", key, id, pid.index, &mut p);
    ctx.out.extend(coverage_and_rest);

    for seg in &msg.segments {
        match seg.name {
            "AL1" => allergy_al1(ctx, seg),
            "OBX" => {
                results::observation(ctx, msg, seg, results::ObsKind::Common, None);
            }
            _ => {}
        }
    }
}

fn contact(ctx: &Ctx<'_>, nk1: &Segment<'_>) -> Option<Json> {
    let mut c = Map::new();
    put(&mut c, "relationship", codeable(nk1.get(3), &ctx.facility).map(|r| json!([r])));
    let names = human_names(nk1.get(2));
    // Patient.contact.name is a single HumanName: the kanji one when there are both.
    put(&mut c, "name", names.into_iter().next());
    let mut t = telecoms(nk1.get(5), Some("home"));
    t.extend(telecoms(nk1.get(6), Some("work")));
    if !t.is_empty() {
        c.insert("telecom".into(), Json::Array(t));
    }
    put(&mut c, "address", addresses(nk1.get(4)).into_iter().next());
    put(&mut c, "organization", nk1.comp_text(13, 1).map(|o| json!({"display": o})));
    (!c.is_empty()).then_some(Json::Object(c))
}

/// IN1 to Coverage. Returns the JP-CLINS insurance identity when 保険者番号 and 番号 are given.
///
/// IN1-3 is the 保険者番号, IN1-10 the 記号, IN1-11 the 番号. The guide maps an "IN1-10 枝番"
/// to Coverage.dependent without saying where it sits; Musubi reads it from IN1-10.2 when that
/// holds two digits.
fn coverage(ctx: &mut Ctx<'_>, in1: &Segment<'_>) -> Option<InsuranceId> {
    let mut c = Map::new();
    c.insert("meta".into(), profile("JP_Coverage"));
    let insurer_raw = in1.comp_text(3, 1);
    let symbol = in1.comp_text(10, 1);
    let number = in1.comp_text(11, 1);
    let branch = in1.comp_text(10, 2).filter(|b| b.len() == 2 && b.bytes().all(|x| x.is_ascii_digit()));
    let mut ext = Vec::new();
    if let Some(s) = &symbol {
        ext.push(json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSymbol", "valueString": s}));
    }
    if let Some(n) = &number {
        ext.push(json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber", "valueString": n}));
    }
    if let Some(b) = &branch {
        ext.push(json!({"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSubNumber", "valueString": b}));
    }
    if !ext.is_empty() {
        c.insert("extension".into(), Json::Array(ext));
    }
    let mut insurance_id = None;
    if let (Some(ins), Some(num)) = (&insurer_raw, &number) {
        let made = ins.parse::<InsurerNumber>().and_then(|n| {
            InsuranceId::new(n, symbol.as_deref().unwrap_or(""), num, branch.as_deref().and_then(|b| b.parse().ok()))
        });
        match made {
            Ok(id) => {
                c.insert(
                    "identifier".into(),
                    json!([{"system": systems::INSURANCE_MEMBER_ID, "value": id.to_string()}]),
                );
                insurance_id = Some(id);
            }
            Err(e) => ctx.warn(
                in1,
                Some(3),
                ProblemKind::InvalidValue,
                format!("IN1 から被保険者個人識別子を作れません: {e}"),
            ),
        }
    }
    c.insert("status".into(), json!("active"));
    put(&mut c, "type", codeable(in1.get(2), &ctx.facility));
    let sub: Vec<String> = [&symbol, &number].into_iter().flatten().cloned().collect();
    if !sub.is_empty() {
        c.insert("subscriberId".into(), json!(sub.join(":")));
    }
    c.insert("beneficiary".into(), ctx.patient_ref.clone());
    put_str(&mut c, "dependent", branch);
    put(&mut c, "relationship", codeable(in1.get(17), &ctx.facility));
    let start = in1.text(12).and_then(|d| fhir_datetime(&d));
    let end = in1.text(13).and_then(|d| fhir_datetime(&d));
    if start.is_some() || end.is_some() {
        let mut period = Map::new();
        put_str(&mut period, "start", start);
        put_str(&mut period, "end", end);
        c.insert("period".into(), Json::Object(period));
    }
    match &insurer_raw {
        Some(ins) => {
            let mut payor = json!({"identifier": {"system": "urn:oid:1.2.392.100495.20.3.61", "value": ins}});
            if let Some(n) = in1.comp_text(4, 1) {
                payor["display"] = json!(n);
            }
            c.insert("payor".into(), json!([payor]));
        }
        None => {
            ctx.warn(in1, Some(3), ProblemKind::MissingField, "IN1-3 保険者番号がありません");
            c.insert("payor".into(), json!([{"display": "不明"}]));
        }
    }
    let suffix = in1.index.to_string();
    ctx.push("Coverage", &suffix, in1.index, c);
    insurance_id
}

fn allergy_category(code: &str) -> Option<&'static str> {
    match code {
        "DA" => Some("medication"),
        "FA" => Some("food"),
        "EA" | "PA" | "LA" => Some("environment"),
        "AA" => Some("biologic"),
        _ => None,
    }
}

fn allergy_base() -> Map<String, Json> {
    let mut a = Map::new();
    a.insert("meta".into(), profile("JP_AllergyIntolerance"));
    a
}

fn allergy_al1(ctx: &mut Ctx<'_>, al1: &Segment<'_>) {
    let mut a = allergy_base();
    a.insert(
        "clinicalStatus".into(),
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}),
    );
    if let Some(cat) = allergy_category(al1.get(2).comp(1).text().as_ref()) {
        a.insert("category".into(), json!([cat]));
    }
    match codeable(al1.get(3), &ctx.facility) {
        Some(c) => {
            a.insert("code".into(), c);
        }
        None => ctx.warn(al1, Some(3), ProblemKind::MissingField, "AL1-3 アレルゲン情報がありません"),
    }
    a.insert("patient".into(), ctx.patient_ref.clone());
    let mut reaction = Map::new();
    if let Some(sev) = severity(al1.get(4).comp(1).text().as_ref()) {
        reaction.insert("severity".into(), json!(sev));
    }
    let reactions: Vec<String> = al1.get(5).reps().iter().filter_map(|r| r.text_opt()).collect();
    if !reactions.is_empty() {
        reaction.insert("description".into(), json!(reactions.join("、")));
        reaction.insert("manifestation".into(), Json::Array(reactions.iter().map(|r| json!({"text": r})).collect()));
        a.insert("reaction".into(), json!([reaction]));
    }
    put_str(&mut a, "onsetDateTime", al1.text(6).and_then(|d| fhir_datetime(&d)));
    ctx.push("AllergyIntolerance", &al1.index.to_string(), al1.index, a);
}

fn severity(code: &str) -> Option<&'static str> {
    match code {
        "MI" => Some("mild"),
        "MO" => Some("moderate"),
        "SV" => Some("severe"),
        _ => None,
    }
}

/// ADT-61: one AllergyIntolerance per IAM.
pub(super) fn adt61(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    for iam in msg.segments.iter().filter(|s| s.name == "IAM") {
        let mut a = allergy_base();
        let action = iam.get(6).comp(1).text().into_owned();
        let clinical = if action == "D" { "inactive" } else { "active" };
        a.insert(
            "clinicalStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": clinical}]}),
        );
        let verification = match (action.as_str(), iam.get(17).comp(1).text().as_ref()) {
            ("D", _) => Some("entered-in-error"),
            (_, "C") => Some("confirmed"),
            (_, "U" | "P") => Some("unconfirmed"),
            (_, "R") => Some("refuted"),
            _ => None,
        };
        if let Some(v) = verification {
            a.insert(
                "verificationStatus".into(),
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": v}]}),
            );
        }
        match iam.get(9).comp(1).text().as_ref() {
            "AL" => {
                a.insert("type".into(), json!("allergy"));
            }
            "IN" => {
                a.insert("type".into(), json!("intolerance"));
            }
            _ => {}
        }
        let cat_code = iam.get(2).comp(1).text().into_owned();
        match allergy_category(&cat_code) {
            Some(cat) => {
                a.insert("category".into(), json!([cat]));
            }
            None if cat_code.is_empty() => {
                ctx.warn(iam, Some(2), ProblemKind::MissingField, "IAM-2 アレルゲン分類がありません")
            }
            None => {}
        }
        match codeable(iam.get(3), &ctx.facility) {
            Some(c) => {
                a.insert("code".into(), c);
            }
            None => ctx.warn(iam, Some(3), ProblemKind::MissingField, "IAM-3 アレルゲン情報がありません"),
        }
        a.insert("patient".into(), ctx.patient_ref.clone());
        let onset_raw = iam.text(11);
        match onset_raw.as_deref().map(|d| (d, fhir_datetime(d))) {
            Some((_, Some(d))) => {
                a.insert("onsetDateTime".into(), json!(d));
            }
            Some((d, None)) => ctx.warn(
                iam,
                Some(11),
                ProblemKind::InvalidValue,
                format!("IAM-11 アレルギー発症日 {d:?} が日付ではありません"),
            ),
            None => put_str(&mut a, "onsetString", iam.text(12)),
        }
        put_str(&mut a, "recordedDate", iam.text(13).and_then(|d| fhir_datetime(&d)));
        put(&mut a, "asserter", practitioner_ref(iam.get(18), &ctx.facility));
        let mut reaction = Map::new();
        put_str(&mut reaction, "severity", severity(iam.get(4).comp(1).text().as_ref()).map(str::to_owned));
        let desc = iam.get(5).comp(1).text_opt().or_else(|| iam.get(5).comp(2).text_opt());
        reaction.insert(
            "manifestation".into(),
            json!([{"text": desc.clone().unwrap_or_else(|| "アレルギー反応情報なし".into())}]),
        );
        put_str(&mut reaction, "description", desc);
        a.insert("reaction".into(), json!([reaction]));
        ctx.push("AllergyIntolerance", &iam.index.to_string(), iam.index, a);
    }
}

/// Encounter status and location status from the trigger event (tables v2-0003).
fn statuses(event: &str) -> (&'static str, &'static str) {
    match event {
        "A04" | "A01" => ("arrived", "active"),
        "A14" => ("planned", "planned"),
        "A27" => ("cancelled", "planned"),
        "A11" => ("cancelled", "active"),
        "A21" => ("onleave", "active"),
        "A53" => ("onleave", "active"),
        "A15" | "A26" | "A16" | "A25" => ("in-progress", "planned"),
        "A03" => ("finished", "completed"),
        _ => ("in-progress", "active"),
    }
}

/// ADT-01/12/21/22/31/32/41/42/51/52: one Encounter from PV1 (with EVN and PV2), dated by the
/// guide's rules (EVN-6, PV1-44/45, PV2-8/9/47 by data type).
pub(super) fn encounter(ctx: &mut Ctx<'_>, msg: &Message<'_>, message_type: &str) {
    let Some(pv1) = msg.segment("PV1") else {
        if let Some(msh) = msg.segments.first() {
            ctx.warn(msh, None, ProblemKind::MissingField, "PV1 セグメントがないため Encounter を作れません");
        }
        return;
    };
    let evn = msg.segment("EVN");
    let pv2 = last_before(msg, msg.segments.len(), "PV2");
    let dt = ctx.path.data_type.as_str().to_owned();
    let event = message_type.split('^').nth(1).unwrap_or("");
    let (status, loc_status) = statuses(event);
    let mut e = Map::new();
    e.insert("meta".into(), profile("JP_Encounter"));
    e.insert("status".into(), json!(status));
    let class = match pv1.get(2).comp(1).text().as_ref() {
        "I" => {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"})
        }
        "O" => {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"})
        }
        "E" => {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER", "display": "emergency"})
        }
        other => {
            ctx.warn(pv1, Some(2), ProblemKind::InvalidValue, format!("PV1-2 患者区分 {other:?} を解釈できません"));
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if dt == "ADT-12" { "AMB" } else { "IMP" }})
        }
    };
    e.insert("class".into(), class);
    put(&mut e, "serviceType", codeable(pv1.get(10), &ctx.facility));
    e.insert("subject".into(), ctx.patient_ref.clone());
    let mut participants = Vec::new();
    for (field, code) in [(7, "ATND"), (17, "ADM")] {
        if let Some(r) = practitioner_ref(pv1.get(field), &ctx.facility) {
            participants.push(json!({
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": code}]}],
                "individual": r,
            }));
        }
    }
    if !participants.is_empty() {
        e.insert("participant".into(), Json::Array(participants));
    }
    let ts = |seg: Option<&Segment<'_>>, f: usize| seg.and_then(|s| s.text(f)).and_then(|v| fhir_datetime(&v));
    let evn6 = ts(evn, 6);
    let pv1_44 = ts(Some(pv1), 44);
    let pv1_45 = ts(Some(pv1), 45);
    let pv2_8 = ts(pv2, 8);
    let pv2_9 = ts(pv2, 9);
    let pv2_47 = ts(pv2, 47);
    let mut period = Map::new();
    put_str(&mut period, "start", pv1_44.clone().or_else(|| if dt == "ADT-21" { pv2_8.clone() } else { None }));
    put_str(&mut period, "end", pv1_45.clone().or_else(|| if dt == "ADT-21" { pv2_9.clone() } else { None }));
    if dt == "ADT-12" && !period.contains_key("start") {
        put_str(&mut period, "start", ts(evn, 2));
    }
    if !period.is_empty() {
        e.insert("period".into(), Json::Object(period));
    }
    let mut loc_period = Map::new();
    let loc_start = match dt.as_str() {
        "ADT-31" | "ADT-32" | "ADT-41" | "ADT-42" => evn6.clone().or(if dt == "ADT-41" { pv2_8.clone() } else { None }),
        "ADT-22" => pv1_44.clone(),
        "ADT-21" => pv2_8.clone(),
        _ => None,
    };
    let loc_end = match dt.as_str() {
        "ADT-52" => pv1_45.clone(),
        "ADT-51" => pv2_9.clone(),
        "ADT-31" => pv2_47.clone(),
        _ => None,
    };
    put_str(&mut loc_period, "start", loc_start);
    put_str(&mut loc_period, "end", loc_end);
    let pl = pv1.get(3);
    let parts: Vec<String> = [(1, "病棟"), (2, "病室"), (3, "病床")]
        .iter()
        .filter_map(|(c, label)| pl.comp(*c).text_opt().map(|v| format!("{label} {v}")))
        .collect();
    if !parts.is_empty() || !loc_period.is_empty() {
        let mut l = Map::new();
        l.insert(
            "location".into(),
            json!({"display": if parts.is_empty() { "所在不明".to_owned() } else { parts.join(" ") }}),
        );
        l.insert("status".into(), json!(loc_status));
        if !loc_period.is_empty() {
            l.insert("period".into(), Json::Object(loc_period));
        }
        e.insert("location".into(), json!([l]));
    }
    if let Some(d) = codeable(pv1.get(36), &ctx.facility) {
        e.insert("hospitalization".into(), json!({"dischargeDisposition": d}));
    }
    ctx.push("Encounter", &pv1.index.to_string(), pv1.index, e);
}
