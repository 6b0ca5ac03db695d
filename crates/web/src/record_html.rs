//! The record as HTML: the identity header, the 6 items, the lab table with trends, documents,
//! the timeline, and a document (Composition sections) rendered readably. Shared by the
//! clinician's patient page and the patient's own record in the portal.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::Value;

use crate::chart::{self, Point};
use crate::html::{date_ms, fhir_date, trusted};
use musubi_record::identity::{self, PatientIdentity};
use musubi_record::page::{self as model, PatientView, Source, concept_text, narrative_text, quantity_text};

/// How the sections link and what they show.
pub(crate) struct Links<'a> {
    /// Base of the links to this record's pages (`/patients/{id}` or `/portal/record`).
    pub base: &'a str,
    /// Show the 未告知 badge (clinicians only; patients never receive those items).
    pub clinician: bool,
    /// How many timeline days to show (None = all).
    pub timeline_limit: Option<usize>,
    /// How many documents to show (None = all).
    pub documents_limit: Option<usize>,
}

fn source(s: &Source) -> Markup {
    html! {
        span.src {
            span.fac { (s.facility_name) }
            @if let Some(d) = s.date { " " time { (date_ms(d)) } }
        }
    }
}

fn also(list: &[Source]) -> Markup {
    html! {
        @if !list.is_empty() {
            span.also { "他に " @for (i, s) in list.iter().enumerate() { @if i > 0 { "、" } (s.facility_name) } " からも報告" }
        }
    }
}

/// The identity block.
pub(crate) fn identity(v: &PatientView) -> Markup {
    let i = &v.identity;
    html! {
        div.identity {
            h1 {
                span.name { (if i.name.is_empty() { "（氏名不明）" } else { &i.name }) }
                @if !i.kana.is_empty() { " " span.kana { (i.kana) } }
            }
            dl.facts {
                dt { "性別" } dd { (i.sex.map_or("不明", |x| x.label())) }
                dt { "生年月日" } dd { (fhir_date(&i.birth_date, false)) @if let Some(a) = i.age { "（" (a) "）" } }
                @if !i.address.is_empty() { dt { "住所" } dd { (i.address) } }
                @if !i.insurance.is_empty() { dt { "被保険者番号" } dd { (i.insurance) } }
            }
            @if !v.sources.is_empty() {
                details.sources {
                    summary { "受診施設と患者ID（" (v.sources.len()) "施設）" }
                    ul { @for s in &v.sources { li { (s.source.facility_name) "（" (s.source.facility) "）: " code { (s.local_id) } } } }
                }
            }
        }
    }
}

/// The 6 items, documents and the timeline.
pub(crate) fn sections(v: &PatientView, l: &Links<'_>) -> Markup {
    html! {
        div.grid {
            section.card.allergy aria-labelledby="h-allergy" {
                h2 #h-allergy { "アレルギー・禁忌" }
                @if v.allergies.is_empty() { p.none { "記録なし" } }
                ul.items {
                    @for a in &v.allergies {
                        li class=(if a.drug { "drug" } else { "other" }) {
                            strong { (a.substance) }
                            " " span.tag { (a.category) }
                            @if a.high { " " span.tag.danger { "重篤度 高" } }
                            @if !a.reactions.is_empty() { " 症状: " (a.reactions.join("、")) }
                            br; (source(&a.source)) " " (also(&a.also))
                        }
                    }
                }
            }
            section.card aria-labelledby="h-infection" {
                h2 #h-infection { "感染症" }
                @if v.infections.is_empty() { p.none { "記録なし" } }
                ul.items {
                    @for i in &v.infections {
                        li {
                            strong { (i.item) } " "
                            span class=(if i.positive { "val abn" } else { "val" }) { (i.result) }
                            br; (source(&i.source))
                        }
                    }
                }
            }
            section.card.wide aria-labelledby="h-dx" {
                h2 #h-dx { "傷病名" }
                @if v.diagnoses.is_empty() { p.none { "記録なし" } } @else {
                    table {
                        thead { tr { th { "傷病名" } th { "状態" } th { "発症" } th { "施設・日付" } } }
                        tbody {
                            @for d in &v.diagnoses {
                                tr class=(if d.active { "active" } else { "inactive" }) {
                                    td {
                                        (d.name)
                                        @if d.verification == "疑い" { " " span.tag { "疑い" } }
                                        @if d.uninformed && l.clinician { " " span.tag.warn title="患者本人には表示されません" { "未告知" } }
                                        @if d.long_term { " " span.tag { "長期保存" } }
                                    }
                                    td { (d.status) }
                                    td { (fhir_date(&d.onset, false)) }
                                    td { (source(&d.source)) " " (also(&d.also)) }
                                }
                            }
                        }
                    }
                }
            }
            section.card.wide aria-labelledby="h-rx" {
                h2 #h-rx { "処方" }
                h3 { "現在の処方" }
                (prescriptions(&v.current_prescriptions))
                h3 { "最近1年の処方" }
                (prescriptions(&v.recent_prescriptions))
            }
            section.card.wide aria-labelledby="h-lab" {
                h2 #h-lab { "検査（主要43項目）" }
                @if v.labs.is_empty() { p.none { "記録なし" } } @else {
                    table.labs {
                        thead { tr { th { "項目" } th { "最新値" } th { "基準範囲" } th { "推移" } th { "施設・日付" } } }
                        tbody {
                            @for s in &v.labs {
                                @if let Some(p) = s.latest() {
                                    tr {
                                        td { a href={(l.base) "/labs/" (crate::html::url_encode(&s.group))} { (s.name) } }
                                        td class=(if p.flag.is_some() { "val abn" } else { "val" }) {
                                            (p.text) @if let Some(f) = p.flag { " " abbr title=(if f == "H" { "基準より高値" } else { "基準より低値" }) { (f) } }
                                        }
                                        td { @if let Some((lo, hi)) = s.range { (fmt_num(lo)) "–" (fmt_num(hi)) } }
                                        td { (trusted(chart::sparkline(&points(s), s.range, &format!("{} の推移（{}件）", s.name, s.points.len())))) }
                                        td { span.src { span.fac { (p.facility_name) } " " time { (date_ms(p.date)) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card.wide aria-labelledby="h-doc" {
                h2 #h-doc { "文書" }
                @if v.documents.is_empty() { p.none { "記録なし" } }
                @let shown_docs = l.documents_limit.unwrap_or(usize::MAX).min(v.documents.len());
                ul.items {
                    @for d in v.documents.iter().take(shown_docs) {
                        li {
                            a href={(l.base) "/documents/" (d.rtype.as_str()) "/" (d.id)} { (d.title) }
                            " " span.tag { (d.kind) }
                            @if d.signed { " " span.tag { "電子署名付き" } }
                            br; (source(&d.source))
                        }
                    }
                }
                @if shown_docs < v.documents.len() {
                    p { a href={(l.base) "?documents=all#h-doc"} { "すべて表示（" (v.documents.len()) "件）" } }
                }
            }
            section.card.wide aria-labelledby="h-tl" {
                h2 #h-tl { "経過（施設をまたいだ時系列）" }
                @let shown = l.timeline_limit.unwrap_or(usize::MAX).min(v.timeline.len());
                @if v.timeline.is_empty() { p.none { "記録なし" } }
                ol.timeline {
                    @for t in v.timeline.iter().take(shown) {
                        li {
                            time { (date_ms(t.date)) }
                            " " span.fac { (t.facility_name) }
                            @if let Some(k) = &t.kind { " " span class={"tag kind " @if k == "入院" { "adm" }} { (k) } }
                            @if let Some(u) = &t.until { " 〜" (fhir_date(u, false)) }
                            " "
                            span.counts { @for (i, (label, n)) in t.counts.iter().enumerate() { @if i > 0 { "・" } (label) " " (n) } }
                            @for d in &t.documents {
                                " " a href={(l.base) "/documents/" (d.rtype.as_str()) "/" (d.id)} { "📄 " (d.title) }
                            }
                        }
                    }
                }
                @if shown < v.timeline.len() {
                    p { a href={(l.base) "?timeline=all#h-tl"} { "すべて表示（" (v.timeline.len()) "件）" } }
                }
            }
        }
        @if v.other_count > 0 {
            p.note { "このほかの診療記録 " (v.other_count) " 件（FHIR API で参照できます）。" }
        }
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn points(s: &model::LabSeries) -> Vec<Point> {
    s.points.iter().filter_map(|p| Some(Point { t: p.date, v: p.value?, abnormal: p.flag.is_some() })).collect()
}

/// The same drug from the same facility, repeated: one row with how many times and since when
/// (a year of monthly refills is one line, not twelve).
pub(crate) struct RxGroup<'a> {
    /// The newest prescription of the group.
    pub latest: &'a model::Prescription,
    /// How many prescriptions.
    pub count: usize,
    /// The oldest prescription's date.
    pub first: Option<i64>,
}

/// Groups prescriptions (newest first) by drug and facility, keeping the order of the newest.
pub(crate) fn group_prescriptions(list: &[model::Prescription]) -> Vec<RxGroup<'_>> {
    let mut out: Vec<RxGroup<'_>> = Vec::new();
    for p in list {
        match out.iter_mut().find(|g| g.latest.drug == p.drug && g.latest.source.facility == p.source.facility) {
            Some(g) => {
                g.count += 1;
                if p.authored.is_some() && (g.first.is_none() || p.authored < g.first) {
                    g.first = p.authored;
                }
            }
            None => out.push(RxGroup { latest: p, count: 1, first: p.authored }),
        }
    }
    out
}

fn prescriptions(list: &[model::Prescription]) -> Markup {
    let groups = group_prescriptions(list);
    html! {
        @if list.is_empty() { p.none { "記録なし" } } @else {
            table {
                thead { tr { th { "薬剤" } th { "用法" } th { "日数" } th { "施設・処方日" } } }
                tbody {
                    @for g in &groups {
                        @let p = g.latest;
                        tr {
                            td { (p.drug) }
                            td { (p.dosage) }
                            td { @if let Some(d) = p.days { (d) "日分" } }
                            td {
                                span.src { span.fac { (p.source.facility_name) } @if let Some(a) = p.authored { " " time { (date_ms(a)) } } }
                                @if g.count > 1 {
                                    br; small.note { "ほか " (g.count - 1) " 回" @if let Some(f) = g.first { "（" (date_ms(f)) " から）" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The page of one lab item: a plot and every value.
pub(crate) fn lab_detail(v: &PatientView, group: &str) -> Option<Markup> {
    let s = v.labs.iter().find(|s| s.group == group)?;
    let first = s.points.first().map(|p| date_ms(p.date)).unwrap_or_default();
    let last = s.points.last().map(|p| date_ms(p.date)).unwrap_or_default();
    Some(html! {
        section.card {
            h2 { (s.name) " の推移" }
            p { "単位: " (s.unit) @if let Some((lo, hi)) = s.range { "　基準範囲: " (fmt_num(lo)) "–" (fmt_num(hi)) } }
            (trusted(chart::plot(&points(s), s.range, &format!("{} の推移", s.name), &first, &last)))
            table {
                thead { tr { th { "日付" } th { "値" } th { "施設" } } }
                tbody {
                    @for p in s.points.iter().rev() {
                        tr {
                            td { (date_ms(p.date)) }
                            td class=(if p.flag.is_some() { "val abn" } else { "val" }) { (p.text) @if let Some(f) = p.flag { " " (f) } }
                            td { (p.facility_name) }
                        }
                    }
                }
            }
        }
    })
}

/// One line about a resource referenced from a document section.
fn entry_line(r: &Value) -> String {
    let t = r["resourceType"].as_str().unwrap_or("");
    match t {
        "Condition" => {
            let status = r["clinicalStatus"]["coding"][0]["code"].as_str().unwrap_or("");
            format!("{}{}", concept_text(&r["code"]), if status == "resolved" { "（治癒・消失）" } else { "" })
        }
        "AllergyIntolerance" => {
            let reactions: Vec<String> = r["reaction"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|x| x["manifestation"].as_array().into_iter().flatten().map(concept_text))
                .collect();
            if reactions.is_empty() {
                concept_text(&r["code"])
            } else {
                format!("{}（{}）", concept_text(&r["code"]), reactions.join("、"))
            }
        }
        "MedicationRequest" | "MedicationStatement" => {
            let dosage: Vec<&str> =
                r["dosageInstruction"].as_array().into_iter().flatten().filter_map(|d| d["text"].as_str()).collect();
            format!("{} {}", concept_text(&r["medicationCodeableConcept"]), dosage.join(" / ")).trim().to_owned()
        }
        "Observation" => {
            let v = if r["valueQuantity"].is_object() {
                quantity_text(&r["valueQuantity"])
            } else {
                r["valueString"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&r["valueCodeableConcept"]))
            };
            format!("{} {}", concept_text(&r["code"]), v).trim().to_owned()
        }
        "Organization" => {
            let tel = r["telecom"].as_array().and_then(|t| t.first()).and_then(|t| t["value"].as_str());
            format!("{}{}", r["name"].as_str().unwrap_or(""), tel.map(|t| format!("（電話 {t}）")).unwrap_or_default())
        }
        "Practitioner" => {
            let n = identity::names(r);
            format!("{} 先生", n.display().unwrap_or(""))
        }
        "Patient" => {
            let i = PatientIdentity::of_patient(r, musubi_fhir::datetime::now_ms());
            format!("{}（{}） {}", i.name, i.kana, i.birth_date)
        }
        "Encounter" => {
            let start = r["period"]["start"].as_str().map(|s| fhir_date(s, false)).unwrap_or_default();
            let end = r["period"]["end"].as_str().map(|s| fhir_date(s, false)).unwrap_or_default();
            let class = r["class"]["display"].as_str().or_else(|| r["class"]["code"].as_str()).unwrap_or("");
            if start.is_empty() {
                // A visit without a date says nothing the section's text does not.
                return String::new();
            }
            format!("{class} {start}{}", if end.is_empty() { String::new() } else { format!("〜{end}") })
        }
        "DocumentReference" => attachment_text(r).unwrap_or_else(|| r["description"].as_str().unwrap_or("").to_owned()),
        "Procedure" | "Immunization" => concept_text(&r["code"]),
        _ => concept_text(&r["code"]),
    }
}

/// The text of a plain-text attachment (base64 `data`), when small enough to show.
fn attachment_text(r: &Value) -> Option<String> {
    use base64::Engine;
    let a = r["content"].as_array()?.first()?.get("attachment")?;
    let ct = a["contentType"].as_str().unwrap_or("");
    if !ct.starts_with("text/plain") {
        return None;
    }
    let data = a["data"].as_str()?;
    if data.len() > 200_000 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn section_html(s: &Value, by_url: &HashMap<&str, &Value>, depth: usize) -> Markup {
    let title = s["title"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&s["code"]));
    let text = s["text"]["div"].as_str().map(narrative_text).unwrap_or_default();
    let entries: Vec<&Value> = s["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reference"].as_str().and_then(|u| by_url.get(u).copied()))
        .collect();
    html! {
        section.docsec {
            @if depth < 3 { h3 { (title) } } @else { h4 { (title) } }
            @if !text.is_empty() && text != title { p.narr { (text) } }
            @let lines: Vec<String> = entries.iter().filter(|r| r["resourceType"].as_str() != Some("Bundle")).map(|r| entry_line(r)).filter(|l| !l.is_empty() && *l != text).collect();
            @if !lines.is_empty() { ul { @for l in &lines { li { (l) } } } }
            @for b in entries.iter().filter(|r| r["resourceType"].as_str() == Some("Bundle")) {
                @if depth < 4 { div.attached { (document_bundle(b, depth + 1)) } }
            }
            @for sub in s["section"].as_array().into_iter().flatten() {
                @if depth < 6 { (section_html(sub, by_url, depth + 1)) }
            }
        }
    }
}

/// A document Bundle (Composition first) rendered readably; attached Bundles (the 退院時サマリー
/// of a referral) are rendered inside.
pub(crate) fn document_bundle(b: &Value, depth: usize) -> Markup {
    let entries: Vec<(&str, &Value)> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["fullUrl"].as_str().unwrap_or(""), &e["resource"]))
        .collect();
    let by_url: HashMap<&str, &Value> = entries.iter().filter(|(u, _)| !u.is_empty()).map(|(u, r)| (*u, *r)).collect();
    let comp = entries.iter().map(|(_, r)| *r).find(|r| r["resourceType"].as_str() == Some("Composition"));
    let Some(c) = comp else {
        return html! { p { "この文書には Composition がありません（" (entries.len()) " 件のリソース）。" } };
    };
    composition(c, &by_url, depth)
}

/// A Composition with its sections.
pub(crate) fn composition(c: &Value, by_url: &HashMap<&str, &Value>, depth: usize) -> Markup {
    let title = c["title"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&c["type"]));
    let authors: Vec<String> = c["author"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            a["reference"]
                .as_str()
                .and_then(|u| by_url.get(u))
                .map(|r| entry_line(r))
                .or_else(|| a["display"].as_str().map(str::to_owned))
        })
        .collect();
    html! {
        article.document {
            @if depth == 0 { h2 { (title) } } @else { h3.doctitle { "添付: " (title) } }
            p.meta {
                @if let Some(d) = c["date"].as_str() { "作成日 " (fhir_date(d, false)) }
                @if !authors.is_empty() { "　作成者 " (authors.join("、")) }
                @if let Some(s) = c["status"].as_str() { "　状態 " (match s { "final" => "確定", "preliminary" => "暫定", "amended" => "修正", _ => s }) }
            }
            @for s in c["section"].as_array().into_iter().flatten() {
                (section_html(s, by_url, depth + 1))
            }
        }
    }
}

/// Any document-like resource read on its own.
pub(crate) fn document(r: &Value) -> Markup {
    match r["resourceType"].as_str() {
        Some("Bundle") => document_bundle(r, 0),
        Some("Composition") => composition(r, &HashMap::new(), 0),
        Some("DocumentReference") => html! {
            article.document {
                h2 { (r["description"].as_str().map(str::to_owned).unwrap_or_else(|| concept_text(&r["type"]))) }
                @if let Some(d) = r["date"].as_str() { p.meta { "作成日 " (fhir_date(d, false)) } }
                @match attachment_text(r) {
                    Some(t) => { p.narr { (t) } }
                    None => {
                        @for c in r["content"].as_array().into_iter().flatten() {
                            p { "添付: " (c["attachment"]["title"].as_str().unwrap_or("（無題）")) "（" (c["attachment"]["contentType"].as_str().unwrap_or("種類不明")) "）" }
                        }
                    }
                }
            }
        },
        _ => {
            html! { article.document { h2 { (r["resourceType"].as_str().unwrap_or("記録")) } p.narr { (entry_line(r)) } } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_prescriptions_are_one_row() {
        let rx = |drug: &str, fac: &str, day: i64| model::Prescription {
            drug: drug.into(),
            dosage: String::new(),
            days: Some(30),
            authored: Some(day * 86_400_000),
            until: None,
            source: Source { facility: fac.into(), facility_name: fac.into(), date: None },
        };
        let list = vec![rx("A", "1", 300), rx("B", "1", 300), rx("A", "2", 290), rx("A", "1", 270), rx("A", "1", 240)];
        let g = group_prescriptions(&list);
        assert_eq!(g.len(), 3);
        assert_eq!((g[0].latest.drug.as_str(), g[0].count, g[0].first), ("A", 3, Some(240 * 86_400_000)));
        assert_eq!((g[1].latest.drug.as_str(), g[1].count), ("B", 1));
        assert_eq!((g[2].latest.source.facility.as_str(), g[2].count), ("2", 1));
        let html = prescriptions(&list).into_string();
        assert!(html.contains("ほか 2 回"), "{html}");
    }

    #[test]
    fn a_referral_renders_its_sections_and_the_attached_summary() {
        let ds = json!({"resourceType": "Bundle", "type": "document", "entry": [
            {"fullUrl": "urn:uuid:d1", "resource": {"resourceType": "Composition", "title": "退院時サマリー", "status": "final",
              "section": [{"title": "入院中経過", "text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">経過良好</div>"}}]}}]});
        let b = json!({"resourceType": "Bundle", "type": "document", "entry": [
            {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Composition", "title": "診療情報提供書", "date": "2026-10-01", "status": "final",
              "author": [{"reference": "urn:uuid:dr"}],
              "section": [
                {"title": "紹介目的", "text": {"div": "<div>精査加療のお願い</div>"}},
                {"title": "構造情報", "section": [
                    {"title": "アレルギー・不耐性反応", "text": {"div": "<div><script>alert(1)</script>ペニシリン</div>"}, "entry": [{"reference": "urn:uuid:a"}]}]},
                {"title": "添付情報", "entry": [{"reference": "urn:uuid:ds"}]}]}},
            {"fullUrl": "urn:uuid:dr", "resource": {"resourceType": "Practitioner", "name": [{"text": "結 一郎"}]}},
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "AllergyIntolerance", "code": {"text": "ペニシリン系"}, "reaction": [{"manifestation": [{"text": "蕁麻疹"}]}]}},
            {"fullUrl": "urn:uuid:ds", "resource": ds}]});
        let html = document(&b).into_string();
        assert!(html.contains("<h2>診療情報提供書</h2>"), "{html}");
        assert!(html.contains("精査加療のお願い"));
        assert!(html.contains("結 一郎 先生"));
        assert!(html.contains("ペニシリン系（蕁麻疹）"));
        assert!(html.contains("添付: 退院時サマリー"));
        assert!(html.contains("経過良好"));
        assert!(!html.contains("<script>"), "narrative is text, never HTML");
    }
}
