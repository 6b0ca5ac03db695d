//! Diagnoses and medication: PPR-01 (Condition), OMP-01/02 (MedicationRequest), OMP-11/12
//! (MedicationAdministration) and OMD (NutritionOrder).

use serde_json::{Map, Value as Json, json};

use super::types::{codeable, codeable_sub, fhir_datetime, number, practitioner_ref, quantity, quantity_cq};
use super::{Ctx, group, last_before, profile, put, put_str};
use crate::ProblemKind;
use crate::hl7::{Message, Segment};

/// PPR-01: one Condition per PRB (with its ZPR modifiers and the ORC of its group).
pub(super) fn ppr01(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    for prb in msg.segments.iter().filter(|s| s.name == "PRB") {
        let grp = group(msg, prb.index, &["PRB"]);
        let zpr = grp.iter().find(|s| s.name == "ZPR");
        let orc = grp.iter().find(|s| s.name == "ORC");
        let mut c = Map::new();
        c.insert("meta".into(), profile("JP_Condition"));
        let instance = prb.get(4).comp(1).text_opt();
        if let Some(i) = &instance {
            c.insert("identifier".into(), json!([ctx.business_id(i)]));
        }
        let action = prb.get(1).comp(1).text().into_owned();
        let end = prb.text(9).or_else(|| prb.text(15)).and_then(|d| fhir_datetime(&d));
        let outcome = prb.get(14).comp(1).text().into_owned();
        let clinical = match (end.is_some(), outcome.as_str()) {
            (true, "R") => "resolved",
            (true, _) => "inactive",
            (false, _) => "active",
        };
        c.insert(
            "clinicalStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}),
        );
        let verification = if action == "DE" {
            "entered-in-error"
        } else {
            match prb.get(13).comp(1).text().as_ref() {
                "P" | "S" => "provisional",
                "R" => "refuted",
                _ => "confirmed",
            }
        };
        c.insert(
            "verificationStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}),
        );
        c.insert(
            "category".into(),
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}]),
        );
        let mut code = codeable(prb.get(3), &ctx.facility);
        if code.is_none() {
            ctx.warn(prb, Some(3), ProblemKind::MissingField, "PRB-3 プロブレムID（病名）がありません");
        }
        // ICD-10 from PRB-10 as a second coding; the name with its modifiers as text.
        if let (Some(cc), Some(icd)) = (code.as_mut(), codeable(prb.get(10), &ctx.facility))
            && let (Some(list), Some(first)) =
                (cc.get_mut("coding").and_then(Json::as_array_mut), icd.get("coding").and_then(|x| x.get(0)))
        {
            list.push(first.clone());
        }
        if let Some(cc) = code.as_mut() {
            let name = prb.comp_text(3, 2);
            let prefix = zpr.and_then(|z| z.comp_text(1, 2));
            let suffix = zpr.and_then(|z| z.comp_text(3, 2));
            if let Some(n) = name {
                cc["text"] = json!(format!("{}{n}{}", prefix.unwrap_or_default(), suffix.unwrap_or_default()));
            }
        }
        put(&mut c, "code", code);
        c.insert("subject".into(), ctx.patient_ref.clone());
        put_str(&mut c, "onsetDateTime", prb.text(16).and_then(|d| fhir_datetime(&d)));
        put_str(&mut c, "abatementDateTime", end);
        put_str(&mut c, "recordedDate", prb.text(7).and_then(|d| fhir_datetime(&d)));
        put(&mut c, "recorder", orc.and_then(|o| practitioner_ref(o.get(12), &ctx.facility)));
        let mut notes = Vec::new();
        if let Some(t) = prb.text(17) {
            notes.push(json!({"text": format!("発生テキスト: {t}")}));
        }
        if let Some(o) = prb.comp_text(14, 2) {
            notes.push(json!({"text": format!("転帰: {o}")}));
        }
        if let Some(r) = prb.comp_text(18, 2) {
            notes.push(json!({"text": format!("順位: {r}")}));
        }
        if !notes.is_empty() {
            c.insert("note".into(), Json::Array(notes));
        }
        let suffix = instance.unwrap_or_else(|| prb.index.to_string());
        ctx.push("Condition", &suffix, prb.index, c);
    }
}

/// JP Core's Rp number system (`MedicationRequest.identifier:rpNumber`, 処方箋内部の剤グループとしての
/// Rp番号), as the URL variant of JP Core 1.1.2 fixes it.
const RP_NUMBER: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber";
/// JP Core's order-in-Rp system (`identifier:orderInRp`, 同一RP番号（剤グループ）での薬剤の表記順),
/// as the URL variant of JP Core 1.1.2 fixes it.
const ORDER_IN_RP: &str = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex";

/// For each segment named `name` (RXE or RXA), its 1-based position among the segments of that
/// name under the same Rp number (ORC-4 of the ORC before it) in this message: the
/// SSMIX2toFHIR guide maps ORC-4 to both `identifier:RpNumber` and `identifier:OrderInRp`
/// (「同一RP番号での薬剤の表記順」). An Rp spread over several ORC groups keeps counting.
fn orders_in_rp(msg: &Message<'_>, name: &str) -> std::collections::HashMap<usize, usize> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut rp: Option<String> = None;
    let mut out = std::collections::HashMap::new();
    for seg in &msg.segments {
        if seg.name == "ORC" {
            rp = seg.comp_text(4, 1);
        } else if seg.name == name
            && let Some(r) = &rp
        {
            let n = seen.entry(r.clone()).or_insert(0);
            *n += 1;
            out.insert(seg.index, *n);
        }
    }
    out
}

/// The identifiers of a medication order or administration: the order number (ORC-2), the Rp
/// number (ORC-4), the order within the Rp when given, and the 処方箋番号 (RXE-15).
fn order_identifiers(
    ctx: &Ctx<'_>,
    orc: Option<&Segment<'_>>,
    order_in_rp: Option<usize>,
    extra: Option<String>,
) -> Vec<Json> {
    let mut ids = Vec::new();
    if let Some(o) = orc {
        if let Some(no) = o.comp_text(2, 1) {
            ids.push(ctx.business_id(&no));
        }
        if let Some(rp) = o.comp_text(4, 1) {
            ids.push(json!({"system": RP_NUMBER, "value": rp}));
            if let Some(n) = order_in_rp {
                ids.push(json!({"system": ORDER_IN_RP, "value": n.to_string()}));
            }
        }
    }
    if let Some(e) = extra {
        ids.push(json!({"system": "urn:oid:1.2.392.100495.20.3.11", "value": format!("{}-{e}", ctx.facility)}));
    }
    ids
}

/// The route, site and method of an RXR segment.
fn route(ctx: &Ctx<'_>, rxr: Option<&Segment<'_>>, dosage: &mut Map<String, Json>) {
    if let Some(r) = rxr {
        put(dosage, "route", codeable(r.get(1), &ctx.facility));
        put(dosage, "site", codeable(r.get(2), &ctx.facility));
        put(dosage, "method", codeable(r.get(4), &ctx.facility));
    }
}

/// OMP-01 / OMP-02 (RDE^O11): one MedicationRequest per RXE.
pub(super) fn rde(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    let injection = ctx.path.data_type.as_str() == "OMP-02";
    let in_rp = orders_in_rp(msg, "RXE");
    for rxe in msg.segments.iter().filter(|s| s.name == "RXE") {
        let orc = last_before(msg, rxe.index, "ORC");
        let grp = group(msg, rxe.index, &["ORC", "RXE"]);
        let tq1 = grp.iter().find(|s| s.name == "TQ1");
        let rxr = grp.iter().find(|s| s.name == "RXR");
        let mut m = Map::new();
        m.insert(
            "meta".into(),
            profile(if injection { "JP_MedicationRequest_Injection" } else { "JP_MedicationRequest" }),
        );
        // JP_MedicationRequest requires orderInRp; the injection profile has no such slice
        // (an injection Rp is one mixture, its drugs are the contained Medication's ingredients).
        let order_in_rp = if injection { None } else { in_rp.get(&rxe.index).copied() };
        let ids = order_identifiers(ctx, orc, order_in_rp, rxe.comp_text(15, 1));
        if !ids.is_empty() {
            m.insert("identifier".into(), Json::Array(ids));
        }
        let status = match orc.map(|o| o.get(1).comp(1).text().into_owned()).as_deref() {
            Some("CA" | "DC" | "OC") => "cancelled",
            _ => "active",
        };
        m.insert("status".into(), json!(status));
        m.insert("intent".into(), json!("order"));
        let cats: Vec<Json> = rxe.get(21).reps().iter().filter_map(|r| codeable(*r, &ctx.facility)).collect();
        if !cats.is_empty() {
            m.insert("category".into(), Json::Array(cats));
        }
        let rxcs: Vec<&Segment<'_>> = grp.iter().filter(|s| s.name == "RXC").collect();
        if injection {
            // JP_MedicationRequest_Injection allows only `medicationReference` (to a
            // JP_Medication): the drugs are the ingredients of a contained Medication.
            let ingredients: Vec<Json> = if rxcs.is_empty() {
                // No RXC components: RXE-2 names the one drug, RXE-3/RXE-5 its dose.
                match codeable(rxe.get(2), &ctx.facility) {
                    Some(item) => {
                        let mut ing = Map::new();
                        ing.insert("itemCodeableConcept".into(), item);
                        if let Some(q) = quantity(&rxe.get(3).text(), rxe.get(5), &ctx.facility) {
                            ing.insert("strength".into(), json!({"numerator": q, "denominator": {"value": 1}}));
                        }
                        ing.insert("isActive".into(), json!(true));
                        vec![Json::Object(ing)]
                    }
                    None => {
                        ctx.warn(rxe, Some(2), ProblemKind::MissingField, "RXE-2 与薬コードがありません");
                        Vec::new()
                    }
                }
            } else {
                // RXE-2 is the 注射種別, the drugs are the RXC components.
                put(&mut m, "category", codeable(rxe.get(2), &ctx.facility).map(|c| json!([c])));
                rxcs.iter()
                    .filter_map(|rxc| {
                        let item = codeable(rxc.get(2), &ctx.facility)?;
                        let mut ing = Map::new();
                        ing.insert("itemCodeableConcept".into(), item);
                        if let Some(q) = quantity(&rxc.get(3).text(), rxc.get(4), &ctx.facility) {
                            ing.insert("strength".into(), json!({"numerator": q, "denominator": {"value": 1}}));
                        }
                        ing.insert(
                            "isActive".into(),
                            json!(rxc.get(1).comp(1).text() == "B" || rxc.get(1).comp(1).text() == "A"),
                        );
                        Some(Json::Object(ing))
                    })
                    .collect()
            };
            // JP_Medication requires `status` (1..1); an ordered drug is an active product.
            let mut med = json!({"resourceType": "Medication", "id": "medication", "status": "active"});
            if ingredients.is_empty() {
                med["code"] = json!({"text": "不明"});
            } else {
                med["ingredient"] = Json::Array(ingredients);
            }
            if let Some(form) = codeable(rxe.get(6), &ctx.facility) {
                med["form"] = form;
            }
            m.insert("contained".into(), json!([med]));
            m.insert("medicationReference".into(), json!({"reference": "#medication"}));
        } else {
            match codeable(rxe.get(2), &ctx.facility) {
                Some(c) => {
                    m.insert("medicationCodeableConcept".into(), c);
                }
                None => {
                    ctx.warn(rxe, Some(2), ProblemKind::MissingField, "RXE-2 与薬コードがありません");
                    m.insert("medicationCodeableConcept".into(), json!({"text": "不明"}));
                }
            }
        }
        m.insert("subject".into(), ctx.patient_ref.clone());
        put_str(&mut m, "authoredOn", orc.and_then(|o| o.text(9)).and_then(|d| fhir_datetime(&d)));
        put(&mut m, "requester", orc.and_then(|o| practitioner_ref(o.get(12), &ctx.facility)));
        put(&mut m, "recorder", orc.and_then(|o| practitioner_ref(o.get(10), &ctx.facility)));
        let mut dosage = Map::new();
        let usage = tq1.map(|t| t.get(3).comp(1));
        if let Some(u) = usage {
            put_str(&mut dosage, "text", u.sub(2).text_opt());
        }
        let mut timing = Map::new();
        put(&mut timing, "code", usage.and_then(|u| codeable_sub(u, &ctx.facility)));
        if let Some(t) = tq1 {
            if let Some(n) = number(&t.get(6).comp(1).text()) {
                let unit = t.get(6).comp(2).text().into_owned();
                let ja = match unit.as_str() {
                    "d" => "日",
                    "wk" => "週",
                    "mo" => "月",
                    "h" => "時間",
                    _ => "",
                };
                timing.insert(
                    "repeat".into(),
                    json!({"boundsDuration": {"value": n, "unit": ja, "system": "http://unitsofmeasure.org", "code": unit}}),
                );
            }
            let start = t.text(7).and_then(|d| fhir_datetime(&d));
            let end = t.text(8).and_then(|d| fhir_datetime(&d));
            if start.is_some() || end.is_some() {
                let mut p = Map::new();
                put_str(&mut p, "start", start);
                put_str(&mut p, "end", end);
                dosage.insert(
                    "extension".into(),
                    json!([{"url": "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_MedicationDosage_PeriodOfUse", "valuePeriod": p}]),
                );
            }
        }
        if !timing.is_empty() {
            dosage.insert("timing".into(), Json::Object(timing));
        }
        put_str(&mut dosage, "patientInstruction", rxe.get(7).comp(2).text_opt());
        route(ctx, rxr, &mut dosage);
        let mut dr = Map::new();
        put(&mut dr, "doseQuantity", quantity(&rxe.get(3).text(), rxe.get(5), &ctx.facility));
        if let Some(daily) = quantity_cq(rxe.get(19), &ctx.facility) {
            dr.insert("rateRatio".into(), json!({"numerator": daily, "denominator": {"value": 1, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}}));
        }
        if !dr.is_empty() {
            dosage.insert("doseAndRate".into(), json!([dr]));
        }
        if !dosage.is_empty() {
            m.insert("dosageInstruction".into(), json!([dosage]));
        }
        if let Some(q) = quantity(&rxe.get(10).text(), rxe.get(11), &ctx.facility) {
            m.insert("dispenseRequest".into(), json!({"quantity": q}));
        }
        ctx.push("MedicationRequest", &rxe.index.to_string(), rxe.index, m);
    }
}

/// OMP-11 / OMP-12 (RAS^O17): one MedicationAdministration per RXA.
pub(super) fn ras(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    let injection = ctx.path.data_type.as_str() == "OMP-12";
    let in_rp = orders_in_rp(msg, "RXA");
    for rxa in msg.segments.iter().filter(|s| s.name == "RXA") {
        let orc = last_before(msg, rxa.index, "ORC");
        // The RXR after a run of RXAs applies to each of them.
        let rxr = group(msg, rxa.index, &["ORC"]).iter().find(|s| s.name == "RXR");
        let mut a = Map::new();
        a.insert(
            "meta".into(),
            profile(if injection { "JP_MedicationAdministration_Injection" } else { "JP_MedicationAdministration" }),
        );
        let order_in_rp = if injection { None } else { in_rp.get(&rxa.index).copied() };
        let ids = order_identifiers(ctx, orc, order_in_rp, None);
        if !ids.is_empty() {
            a.insert("identifier".into(), Json::Array(ids));
        }
        let completion = rxa.get(20).comp(1).text().into_owned();
        let status = match completion.as_str() {
            "CP" | "" => "completed",
            "PA" => "stopped",
            "NA" | "RE" => "not-done",
            other => {
                ctx.warn(
                    rxa,
                    Some(20),
                    ProblemKind::InvalidValue,
                    format!("RXA-20 完了状態 {other:?} を解釈できません"),
                );
                "unknown"
            }
        };
        a.insert("status".into(), json!(status));
        let medication = codeable(rxa.get(5), &ctx.facility).unwrap_or_else(|| {
            ctx.warn(rxa, Some(5), ProblemKind::MissingField, "RXA-5 投薬コードがありません");
            json!({"text": "不明"})
        });
        if injection {
            // JP_MedicationAdministration_Injection allows only `medicationReference` (to a
            // JP_Medication): the drug this RXA gave becomes a contained Medication.
            let med = json!({"resourceType": "Medication", "id": "medication", "status": "active", "code": medication});
            a.insert("contained".into(), json!([med]));
            a.insert("medicationReference".into(), json!({"reference": "#medication"}));
        } else {
            a.insert("medicationCodeableConcept".into(), medication);
        }
        a.insert("subject".into(), ctx.patient_ref.clone());
        let start = rxa.text(3).and_then(|d| fhir_datetime(&d));
        let end = rxa.text(4).and_then(|d| fhir_datetime(&d));
        match (start, end) {
            (Some(s), e) => {
                let mut p = Map::new();
                p.insert("start".into(), json!(s));
                put_str(&mut p, "end", e);
                a.insert("effectivePeriod".into(), Json::Object(p));
            }
            (None, Some(e)) => {
                a.insert("effectiveDateTime".into(), json!(e));
            }
            (None, None) => {
                ctx.warn(rxa, Some(3), ProblemKind::MissingField, "RXA-3 投薬開始日時がありません");
                a.insert("effectiveDateTime".into(), json!(ctx.path.occurred_at_fhir()));
            }
        }
        if let Some(p) = practitioner_ref(rxa.get(10), &ctx.facility) {
            a.insert("performer".into(), json!([{"actor": p}]));
        }
        if let Some(n) = rxa.get(9).comp(2).text_opt().or_else(|| rxa.get(9).comp(1).text_opt()) {
            a.insert("note".into(), json!([{"text": n}]));
        }
        let mut dosage = Map::new();
        put_str(&mut dosage, "text", rxa.text(12).map(|r| format!("投与速度 {r}")));
        route(ctx, rxr, &mut dosage);
        put(&mut dosage, "dose", quantity(&rxa.get(6).text(), rxa.get(7), &ctx.facility));
        if !dosage.is_empty() {
            a.insert("dosage".into(), Json::Object(dosage));
        }
        ctx.push("MedicationAdministration", &rxa.index.to_string(), rxa.index, a);
    }
}

/// OMD (OMD^O03): one NutritionOrder per ODS.
pub(super) fn omd(ctx: &mut Ctx<'_>, msg: &Message<'_>) {
    for ods in msg.segments.iter().filter(|s| s.name == "ODS") {
        let orc = last_before(msg, ods.index, "ORC");
        let mut n = Map::new();
        let ids: Vec<Json> = orc.and_then(|o| o.comp_text(2, 1)).map(|no| ctx.business_id(&no)).into_iter().collect();
        if !ids.is_empty() {
            n.insert("identifier".into(), Json::Array(ids));
        }
        n.insert("status".into(), json!("active"));
        n.insert("intent".into(), json!("order"));
        n.insert("patient".into(), ctx.patient_ref.clone());
        let when =
            orc.and_then(|o| o.text(9)).and_then(|d| fhir_datetime(&d)).unwrap_or_else(|| ctx.path.occurred_at_fhir());
        n.insert("dateTime".into(), json!(when));
        put(&mut n, "orderer", orc.and_then(|o| practitioner_ref(o.get(12), &ctx.facility)));
        let mut diet = Map::new();
        let types: Vec<Json> = ods.get(3).reps().iter().filter_map(|r| codeable(*r, &ctx.facility)).collect();
        if !types.is_empty() {
            diet.insert("type".into(), Json::Array(types));
        }
        let texts: Vec<String> = ods.get(4).reps().iter().filter_map(|r| r.text_opt()).collect();
        if !texts.is_empty() {
            diet.insert("instruction".into(), json!(texts.join("、")));
        }
        n.insert("oralDiet".into(), Json::Object(diet));
        ctx.push("NutritionOrder", &ods.index.to_string(), ods.index, n);
    }
}
