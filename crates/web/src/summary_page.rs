//! The emergency summary (救急用サマリ) as a page and as a PDF: what an emergency doctor needs
//! first, prioritized (allergies and contraindications, infections, current medication, active
//! diagnoses, critical labs, admissions and surgeries, whom to call). Both are one
//! `Service::emergency_summary` call (gated, audited as `emergency-summary`), reached by normal
//! access or during an emergency access (break-glass); the PDF is `musubi_pdf::render_summary`
//! of the same summary.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use musubi_record::summary::{EmergencySummary, Section, Source};
use musubi_service::{ApiError, ErrorKind};

use crate::Web;
use crate::html::{self, Nav, page};
use crate::session::{Clinician, PageError};

type Result<T> = std::result::Result<T, PageError>;

fn src(s: &Source) -> Markup {
    html! {
        span.src {
            span.fac { (s.facility_label()) }
            @if let Some(d) = &s.date { " " time { (d.replace('-', "/")) } }
        }
    }
}

fn more<T>(s: &Section<T>) -> Markup {
    html! {
        @if s.more > 0 { p.note { "ほか " (s.more) " 件（患者の記録のページで確認できます）" } }
    }
}

fn empty<T>(s: &Section<T>) -> Markup {
    html! { @if let Some(t) = s.empty_text { p.none { (t) } } }
}

/// The summary's sections as HTML (the page's body below the header).
pub(crate) fn summary_body(s: &EmergencySummary) -> Markup {
    html! {
        div.summary {
            section.card.critical aria-labelledby="s-allergy" {
                h2 #s-allergy { "1. " (s.allergies.title) }
                (empty(&s.allergies))
                ul.items {
                    @for a in &s.allergies.items {
                        li class=(if a.is_drug { "drug" } else { "other" }) {
                            span class=(if a.is_drug { "tag danger" } else { "tag" }) { (a.category) }
                            " " strong { (a.substance) }
                            @if let Some(c) = &a.criticality { " " span.tag.warn { "重篤度 " (c) } }
                            @if let Some(r) = &a.reaction { " 症状: " (r) }
                            br; (src(&a.source))
                        }
                    }
                }
                (more(&s.allergies))
            }
            section.card aria-labelledby="s-infection" {
                h2 #s-infection { "2. " (s.infections.title) }
                table {
                    thead { tr { th { "項目" } th { "結果" } th { "施設・日付" } } }
                    tbody {
                        @for i in &s.infections.items {
                            tr {
                                th scope="row" { (i.item) }
                                td class=(if i.positive == Some(true) { "val abn" } else { "val" }) {
                                    @match (&i.result, i.positive) {
                                        (Some(r), Some(true)) if !r.contains("陽性") => { (r) "（陽性）" }
                                        (Some(r), _) => { (r) }
                                        (None, _) => { span.none { "記録なし" } }
                                    }
                                }
                                td { @if let Some(so) = &i.source { (src(so)) } }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="s-med" {
                h2 #s-med { "3. " (s.medications.title) }
                (empty(&s.medications))
                @if !s.medications.items.is_empty() {
                    table {
                        thead { tr { th { "薬剤" } th { "用量・用法" } th { "日数" } th { "施設・日付" } } }
                        tbody {
                            @for m in &s.medications.items {
                                tr {
                                    td { strong { (m.name) } " " span.tag { (m.kind) } @if let Some(r) = &m.route { " " span.tag { (r) } } }
                                    td { (m.dose.as_deref().unwrap_or("")) @if m.dose.is_some() && m.usage.is_some() { " " } (m.usage.as_deref().unwrap_or("")) }
                                    td { (m.days.as_deref().unwrap_or("")) }
                                    td { (src(&m.source)) }
                                }
                            }
                        }
                    }
                }
                (more(&s.medications))
            }
            section.card aria-labelledby="s-dx" {
                h2 #s-dx { "4. " (s.diagnoses.title) }
                (empty(&s.diagnoses))
                ul.items {
                    @for d in &s.diagnoses.items {
                        li {
                            strong { (d.name) }
                            @if d.suspected { " " span.tag { "疑い" } }
                            @if let Some(o) = &d.onset { " 発症 " (o.replace('-', "/")) }
                            br; (src(&d.source))
                        }
                    }
                }
                (more(&s.diagnoses))
            }
            section.card aria-labelledby="s-lab" {
                h2 #s-lab { "5. " (s.labs.title) }
                (empty(&s.labs))
                @if !s.labs.items.is_empty() {
                    table.labs {
                        thead { tr { th { "項目" } th { "最新値" } th { "前回" } th { "基準範囲" } th { "施設・日付" } } }
                        tbody {
                            @for l in &s.labs.items {
                                tr {
                                    td { (l.name) }
                                    td class=(if l.abnormal { "val abn" } else { "val" }) {
                                        (l.value)
                                        @if let Some(f) = &l.flag { " " abbr title="基準範囲外" { (f) } }
                                        @if let Some(t) = l.trend { " " span.trend { (t) } }
                                    }
                                    td { (l.previous.as_deref().unwrap_or("")) }
                                    td { (l.range.as_deref().unwrap_or("")) }
                                    td { (src(&l.source)) }
                                }
                            }
                        }
                    }
                }
                (more(&s.labs))
            }
            section.card aria-labelledby="s-events" {
                h2 #s-events { "6. " (s.events.title) }
                (empty(&s.events))
                ul.items {
                    @for e in &s.events.items {
                        li { span.tag.adm { (e.kind) } " " strong { (e.what) } " " (e.period) br; (src(&e.source)) }
                    }
                }
                (more(&s.events))
            }
            section.card aria-labelledby="s-contacts" {
                h2 #s-contacts { "7. " (s.contacts.title) }
                (empty(&s.contacts))
                @if !s.contacts.items.is_empty() {
                    table {
                        thead { tr { th { "医療機関" } th { "電話" } th { "担当医" } th { "最終受診" } th { "記録数" } } }
                        tbody {
                            @for c in &s.contacts.items {
                                tr {
                                    td { strong { (c.name) } br; small { (c.facility) } }
                                    td { @if let Some(p) = &c.phone { a href={"tel:" (p)} { (p) } } }
                                    td { (c.practitioners.join("、")) }
                                    td { (c.last_date.as_deref().map(|d| d.replace('-', "/")).unwrap_or_default()) }
                                    td { (c.records) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The summary, or the page that offers the ways to gain access when nothing is visible.
async fn load(web: &Web, c: &Clinician, id: &str) -> std::result::Result<EmergencySummary, ApiError> {
    let ctx = c.ctx.clone();
    let pid = id.to_owned();
    web.call(move |svc| svc.emergency_summary(&ctx, &pid)).await
}

pub(crate) async fn summary(State(web): State<Web>, c: Clinician, Path(id): Path<String>) -> Result<Response> {
    crate::viewer::valid_id(&id)?;
    let s = match load(&web, &c, &id).await {
        Ok(s) => s,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(crate::viewer::not_visible(&c, &id, "summary")),
        Err(e) => return Err(e.into()),
    };
    let generated =
        musubi_fhir::datetime::parse_range(&s.generated_at).map(|r| html::datetime_ms(r.lo)).unwrap_or_default();
    Ok(page(
        &format!("救急用サマリ {}", s.identity.name),
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            @if let Some(reason) = &s.emergency {
                div.banner.emergency role="alert" {
                    strong { "緊急時の閲覧中" } " 理由: " (reason) " — この閲覧は監査記録に残り、患者さんに通知されています。"
                }
            }
            div.patient-head {
                div.identity {
                    p.crumb { a href={"/patients/" (id)} { "← 患者の記録（詳細）" } }
                    h1 { "救急用サマリ" }
                    p.idline { strong.name { (if s.identity.name.is_empty() { "（氏名不明）" } else { &s.identity.name }) } }
                    dl.facts {
                        @let i = &s.identity;
                        @if !i.kana.is_empty() { dt { "カナ" } dd { (i.kana) } }
                        @if let Some(x) = i.sex { dt { "性別" } dd { (x.label()) } }
                        @if !i.birth_date.is_empty() { dt { "生年月日" } dd { (i.birth_date.replace('-', "/")) @if let Some(a) = i.age { "（" (a) "）" } } }
                        @if !i.insurance.is_empty() { dt { "被保険者番号" } dd { (i.insurance) } }
                        @if !i.address.is_empty() { dt { "住所" } dd { (i.address) } }
                        @if !i.phone.is_empty() { dt { "電話" } dd { (i.phone) } }
                    }
                    p.note { "作成 " (generated) "　" (c.user.name) "（" (c.user.profession.label_ja()) "）　" (s.records_seen) " 件の記録から作成" }
                }
                div.actions {
                    a.button href={"/patients/" (id) "/summary.pdf"} download { "PDF をダウンロード" }
                }
            }
            (summary_body(&s))
        },
    ))
}

/// The PDF's file name: ASCII (`musubi-summary-20261103-<patient>.pdf`), so every browser keeps it.
fn file_name(patient_id: &str, now_ms: i64) -> String {
    let date = html::date_ms(now_ms).replace('/', "");
    let id: String = patient_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    format!("musubi-summary-{date}-{id}.pdf")
}

pub(crate) async fn summary_pdf(State(web): State<Web>, c: Clinician, Path(id): Path<String>) -> Result<Response> {
    crate::viewer::valid_id(&id)?;
    let ctx = c.ctx.clone();
    let pid = id.clone();
    let by = format!("{}（{}）", c.user.name, c.user.profession.label_ja());
    let facility = c.user.facility.to_string();
    let (pdf, now) = web
        .call(move |svc| {
            let s = svc.emergency_summary(&ctx, &pid)?;
            // The caller's facility name for the footer (registry data, not clinical).
            let fname = svc.facility(&ctx, &facility)?.map_or(facility, |f| f.name);
            let now = musubi_fhir::datetime::now_ms();
            let meta = musubi_pdf::PdfMeta { generated_at: now, generated_by: by, facility: fname };
            let pdf = musubi_pdf::render_summary(&s, &meta).map_err(|e| ApiError::internal(format!("pdf: {e}")))?;
            Ok((pdf, now))
        })
        .await?;
    let mut r = (StatusCode::OK, pdf).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file_name(&id, now))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain_ascii() {
        // 2026-11-02T20:00Z is 2026-11-03 in Japan.
        assert_eq!(file_name("abc-1", 1_793_649_600_000), "musubi-summary-20261103-abc-1.pdf");
        assert_eq!(file_name("a\"b/../c", 1_793_649_600_000), "musubi-summary-20261103-abc.pdf");
    }
}
