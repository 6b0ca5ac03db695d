//! Referral exchange pages (文書送受信): the facility's inbox (未受領 / 受領済み) and outbox, a
//! new 診療情報提供書 addressed to a facility — written in the form (pre-filled from the
//! patient's record) or uploaded as made by the EMR with its CMS signature — with a 退院時サマリー
//! and files attached, an opened referral (the letter rendered, the signature checked, the
//! files), and a reply (返書). Every step is a `Service` referral call (gated and audited there;
//! opening one addressed to the caller's facility marks it received).

use axum::Router;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use musubi_fhir::ResourceType;
use musubi_service::referral::{NewFile, NewReferral, ReferralStatus, ReferralSummary, ReferralView};
use musubi_service::signature::{HcRole, Revocation, SignatureStatus, SignerResult};
use musubi_service::{ApiError, Ctx, ErrorKind, parse_query};
use serde_json::Value;

use crate::Web;
use crate::html::{self, Nav, csrf_field, notice, page};
use crate::letter::{self, Facility, Letter};
use crate::record_html;
use crate::session::{self, Clinician, Form, PageError};

type Result<T> = std::result::Result<T, PageError>;

/// The largest upload the referral form accepts (the service's own limits are below it).
const UPLOAD_LIMIT: usize = 25 * 1024 * 1024;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/referrals", get(list))
        .route("/referrals/new", get(new_form).post(new_post))
        .route("/referrals/{id}", get(open))
        .route("/referrals/{id}/files/{seq}", get(file))
        .route("/referrals/{id}/reply", get(reply_form).post(reply_post))
        .route("/referrals/{id}/withdraw", axum::routing::post(withdraw_post))
        .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT))
}

/// A letter's own id: `W20261103-9f2c41d7` (the Bundle identifier allows only half-width
/// letters, digits and hyphens, at most 36).
fn letter_id(prefix: &str, now_ms: i64) -> std::result::Result<String, ApiError> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{prefix}{}-{hex}", html::date_ms(now_ms).replace('/', "")))
}

fn query(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| parse_query(&q)).unwrap_or_default()
}

fn q_get<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    q.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.trim())
}

fn status_tag(r: &ReferralSummary) -> Markup {
    let class = match r.status {
        ReferralStatus::Sent => "tag warn",
        ReferralStatus::Received => "tag ok",
        ReferralStatus::Withdrawn => "tag danger",
        ReferralStatus::Deleted => "tag",
    };
    html! { span class=(class) { (r.status_label) } }
}

/// A letter still waiting for the addressee (not received, neither withdrawn nor deleted).
fn is_waiting(r: &ReferralSummary) -> bool {
    r.received_at.is_none() && r.deleted_at.is_none()
}

fn signature_tag(status: SignatureStatus) -> Markup {
    let class = match status {
        SignatureStatus::Valid => "tag ok",
        SignatureStatus::Unsigned => "tag",
        _ => "tag danger",
    };
    html! { span class=(class) { (status.label_ja()) } }
}

fn patient_line(r: &ReferralSummary) -> String {
    match &r.patient {
        Some(p) => format!(
            "{}{}",
            p.name.as_deref().unwrap_or("（氏名なし）"),
            p.birth_date.as_deref().map(|b| format!("（{}生）", b.replace('-', "/"))).unwrap_or_default()
        ),
        None if r.status == ReferralStatus::Withdrawn => "（取り下げ）".to_owned(),
        None => "（削除済み）".to_owned(),
    }
}

fn facility_label(code: &str, name: &Option<String>) -> String {
    name.clone().unwrap_or_else(|| code.to_owned())
}

async fn list(State(web): State<Web>, c: Clinician, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let outbox = q_get(&q, "box") == "out";
    let only_new = q_get(&q, "status") == "sent";
    let ctx = c.ctx.clone();
    let (inbox, out) = web
        .call(move |svc| {
            let inbox = svc.referral_inbox(&ctx, None, false)?;
            let out = if outbox { svc.referral_outbox(&ctx, None, false)? } else { Vec::new() };
            Ok((inbox, out))
        })
        .await?;
    let waiting = inbox.iter().filter(|r| is_waiting(r)).count();
    let rows: Vec<&ReferralSummary> =
        if outbox { out.iter().collect() } else { inbox.iter().filter(|r| !only_new || is_waiting(r)).collect() };
    let msg = match q_get(&q, "msg") {
        "sent" => Some(notice("ok", "紹介状を送信しました。宛先の医療機関が開くと「受領済み」になります。")),
        "withdrawn" => Some(notice("ok", "紹介状を取り下げました。宛先の受信箱には「取り下げ」と表示されます。")),
        _ => None,
    };
    Ok(page(
        "文書送受信",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            h1 { "文書送受信（診療情報提供書）" }
            @if let Some(m) = msg { (m) }
            div.actions {
                a.button.secondary href="/referrals" aria-current=(if outbox { "false" } else { "page" }) { "受信箱" @if waiting > 0 { "（未受領 " (waiting) "）" } }
                a.button.secondary href="/referrals?box=out" aria-current=(if outbox { "page" } else { "false" }) { "送信箱" }
                @if !outbox { a.button.secondary href="/referrals?status=sent" { "未受領のみ" } }
                a.button href="/referrals/new" { "紹介状を作成" }
            }
            section.card {
                h2 { (if outbox { "送信した紹介状" } else { "届いた紹介状" }) "（" (rows.len()) " 件）" }
                @if rows.is_empty() { p.none { "紹介状はありません。" } } @else {
                    table.referrals {
                        thead {
                            tr {
                                th { "状態" } th { "患者" } th { (if outbox { "宛先" } else { "紹介元" }) } th { "表題・作成者" }
                                th { "送信日時" } th { "受領" } th { "署名" } th { "添付" }
                            }
                        }
                        tbody {
                            @for r in &rows {
                                tr class=(if is_waiting(r) { "unread" } else { "" }) {
                                    td {
                                        (status_tag(r))
                                        // When the sender took it back (the receipt, if any, stays in its column).
                                        @if let (ReferralStatus::Withdrawn, Some(at)) = (r.status, r.deleted_at) { br; small { (html::datetime_ms(at)) } }
                                    }
                                    td { a href={"/referrals/" (r.id)} { (patient_line(r)) } }
                                    td {
                                        @if outbox { (facility_label(&r.addressee.code, &r.addressee.name)) } @else { (facility_label(&r.sender.code, &r.sender.name)) }
                                    }
                                    td { (r.title.as_deref().unwrap_or("診療情報提供書")) @if let Some(a) = &r.author { br; small { (a) } } @if r.reply_to.is_some() { " " span.tag { "返書" } } }
                                    td { (html::datetime_ms(r.created)) }
                                    td {
                                        @if let Some(at) = r.received_at { (html::datetime_ms(at)) br; small { (r.received_by_name.clone().or_else(|| r.received_by.clone()).unwrap_or_default()) } } @else { "—" }
                                    }
                                    td { (signature_tag(r.signature.status)) }
                                    td {
                                        @if r.has_discharge_summary { span.tag { "退院時サマリー" } " " }
                                        @if !r.files.is_empty() { span.tag { "ファイル " (r.files.len()) } }
                                    }
                                }
                            }
                        }
                    }
                }
                p.note { "紹介状は、宛先が受領してから約1週間後、受領されなくても送信から6か月後に削除されます。紹介元が取り下げた紹介状は「取り下げ」と表示され、開けません。" }
            }
        },
    ))
}

/// What the form shows: the patient's name, and the sections pre-filled from the record.
struct Draft {
    patient_id: String,
    patient_name: String,
    texts: Vec<(String, String)>,
}

/// A draft of the letter's sections from the patient's record (what the caller may see).
async fn draft(web: &Web, c: &Clinician, patient_id: &str) -> std::result::Result<Draft, ApiError> {
    let ctx = c.ctx.clone();
    let pid = patient_id.to_owned();
    web.call(move |svc| {
        let rec = svc.person_record(&ctx, &pid, "referral-draft")?;
        let v = musubi_record::page::patient_view(&rec.person_id, &rec.entries, musubi_fhir::datetime::now_ms());
        let lines = |it: Vec<String>| it.into_iter().filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
        let problem = lines(v.diagnoses.iter().filter(|d| d.active && !d.uninformed).map(|d| d.name.clone()).collect());
        let past = lines(
            v.diagnoses
                .iter()
                .filter(|d| !d.active)
                .map(|d| format!("{} {}（{}）", crate::html::fhir_date(&d.onset, false), d.name, d.status))
                .collect(),
        );
        let allergy = lines(
            v.allergies
                .iter()
                .map(|a| {
                    if a.reactions.is_empty() {
                        a.substance.clone()
                    } else {
                        format!("{}（{}）", a.substance, a.reactions.join("、"))
                    }
                })
                .collect(),
        );
        let infection = lines(v.infections.iter().map(|i| format!("{} {}", i.item, i.result)).collect());
        let medication = lines(
            crate::record_html::group_prescriptions(&v.current_prescriptions)
                .iter()
                .map(|g| format!("{} {}", g.latest.drug, g.latest.dosage).trim().to_owned())
                .collect(),
        );
        let study = lines(
            v.labs
                .iter()
                .filter_map(|s| {
                    s.latest().map(|p| format!("{} {}（{}）", s.name, p.text, crate::html::date_ms(p.date)))
                })
                .collect(),
        );
        Ok(Draft {
            patient_id: pid,
            patient_name: v.identity.name.clone(),
            texts: vec![
                ("problem".into(), problem),
                ("past".into(), past),
                ("allergy".into(), allergy),
                ("infection".into(), infection),
                ("study".into(), study),
                ("medication".into(), medication),
            ],
        })
    })
    .await
}

fn new_page(c: &Clinician, d: &Draft, facilities: &[(String, String)], message: Option<&str>, f: &Form) -> Response {
    let text = |k: &str| -> String {
        if f.0.is_empty() {
            d.texts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default()
        } else {
            f.get(k).to_owned()
        }
    };
    page(
        "紹介状を作成",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            p.crumb { a href={"/patients/" (d.patient_id)} { "← " (d.patient_name) " さんの記録" } }
            h1 { "診療情報提供書を作成" }
            @if let Some(m) = message { (notice("error", m)) }
            form method="post" action="/referrals/new" enctype="multipart/form-data" {
                (csrf_field(&c.csrf))
                input type="hidden" name="patient" value=(d.patient_id);
                section.card {
                    h2 { "宛先と患者" }
                    p { "患者: " strong { (d.patient_name) } }
                    div.fields {
                        label { "紹介先の医療機関"
                            select name="addressee" required {
                                option value="" { "選んでください" }
                                @for (code, name) in facilities {
                                    option value=(code) selected[f.get("addressee") == code] { (name) "（" (code) "）" }
                                }
                            }
                        }
                        label { "紹介先の医師（任意）" input type="text" name="addressee_doctor" value=(f.get("addressee_doctor")) placeholder="担当医"; }
                    }
                }
                section.card {
                    h2 { "本文" }
                    p.note { "傷病名・既往歴・アレルギー・感染症・検査・投薬は、この患者の記録（閲覧できる範囲）から下書きしています。必要に応じて直してください。未告知の傷病名は下書きに含めません。" }
                    @for (key, _, title) in letter::SECTIONS {
                        label { (title) @if key == "purpose" { "（必須）" } @else if letter::REQUIRED.contains(&key) { "（空欄なら「記載なし」）" }
                            textarea name=(key) rows=(if key == "purpose" || key == "remarks" { 2 } else { 4 }) required[key == "purpose"] { (text(key)) }
                        }
                    }
                }
                section.card {
                    h2 { "添付" }
                    label { "退院時サマリー（FHIR 文書 Bundle の JSON ファイル、任意）" input type="file" name="discharge_summary" accept=".json,application/json,application/fhir+json"; }
                    label { "ファイル（PDF・画像、1件 10 MB まで、合計 20 MB・10件まで）" input type="file" name="files" multiple accept=".pdf,.jpg,.jpeg,.png,.tif,.tiff,.gif"; }
                    details {
                        summary { "電子カルテで作成・署名した文書を送る場合" }
                        p.note { "上の本文の代わりに、電子カルテが出力した診療情報提供書（FHIR 文書 Bundle の JSON）と、その CMS 署名（.p7s、HPKI 電子署名）を添付できます。署名は送信時と開封時に検証され、結果が表示されます。" }
                        label { "診療情報提供書（JSON）" input type="file" name="document" accept=".json,application/json,application/fhir+json"; }
                        label { "署名（.p7s / DER または PEM）" input type="file" name="signature" accept=".p7s,.der,.pem"; }
                    }
                }
                button type="submit" { "送信する" }
            }
        },
    )
}

/// The facilities a letter may be addressed to (all but the caller's own; registry data).
async fn addressees(web: &Web, ctx: &Ctx, own: &str) -> std::result::Result<Vec<(String, String)>, ApiError> {
    let own = own.to_owned();
    let ctx = ctx.clone();
    web.call(move |svc| {
        Ok(svc.facilities(&ctx)?.into_iter().filter(|f| f.code != own).map(|f| (f.code, f.name)).collect())
    })
    .await
}

async fn new_form(State(web): State<Web>, c: Clinician, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let pid = q_get(&q, "patient").to_owned();
    if pid.is_empty() {
        return Ok(page(
            "紹介状を作成",
            Nav::Clinician(&c.user, &c.csrf),
            html! {
                section.card.narrow {
                    h1 { "紹介状を作成" }
                    p { "まず患者を検索し、患者のページの「紹介状を作成」から始めてください。" }
                    p { a.button href="/patients" { "患者検索へ" } }
                }
            },
        ));
    }
    crate::viewer::valid_id(&pid)?;
    let d = match draft(&web, &c, &pid).await {
        Ok(d) => d,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(crate::viewer::not_visible(&c, &pid, "record")),
        Err(e) => return Err(e.into()),
    };
    let facilities = addressees(&web, &c.ctx, c.user.facility.as_str()).await?;
    Ok(new_page(&c, &d, &facilities, None, &Form::default()))
}

/// The referral form's fields and files.
#[derive(Default)]
struct Upload {
    form: Form,
    files: Vec<NewFile>,
    document: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
    discharge: Option<Vec<u8>>,
}

async fn read_upload(mut m: Multipart) -> std::result::Result<Upload, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("送信内容を読み取れませんでした: {e}"))
    };
    let mut u = Upload::default();
    while let Some(field) = m.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().unwrap_or("application/octet-stream").to_owned();
        let data = field.bytes().await.map_err(bad)?.to_vec();
        match (name.as_str(), filename) {
            // An empty file input sends a part with an empty name and no bytes.
            (_, Some(f)) if f.is_empty() && data.is_empty() => {}
            ("files", Some(f)) => u.files.push(NewFile { filename: f, content_type, data }),
            ("document", Some(_)) => u.document = Some(data),
            ("signature", Some(_)) => u.signature = Some(data),
            ("discharge_summary", Some(_)) => u.discharge = Some(data),
            (_, _) => u.form.0.push((name, String::from_utf8_lossy(&data).into_owned())),
        }
    }
    Ok(u)
}

async fn new_post(State(web): State<Web>, c: Clinician, m: Multipart) -> Result<Response> {
    let u = read_upload(m).await?;
    session::check_csrf(&u.form, &c.csrf)?;
    let pid = u.form.get("patient").to_owned();
    crate::viewer::valid_id(&pid)?;
    let addressee = u.form.get("addressee").to_owned();
    let discharge = match &u.discharge {
        Some(bytes) => Some(
            serde_json::from_slice::<Value>(bytes)
                .map_err(|e| ApiError::bad_request(format!("退院時サマリーのファイルが JSON として読めません: {e}")))?,
        ),
        None => None,
    };
    let ctx = c.ctx.clone();
    let user = c.user.clone();
    let form = u.form.clone();
    let (files, document, signature) = (u.files, u.document, u.signature);
    let pid2 = pid.clone();
    let sent = web
        .call(move |svc| {
            if addressee.is_empty() {
                return Err(ApiError::bad_request("紹介先の医療機関を選んでください"));
            }
            let document = match (document, &signature) {
                (Some(d), _) => Some(d),
                // A signature that envelopes its document brings the document itself.
                (None, Some(_)) => None,
                (None, None) => {
                    if form.get("purpose").is_empty() {
                        return Err(ApiError::bad_request("紹介目的を入力してください"));
                    }
                    // The patient as this facility holds them (read through the gate).
                    let p = svc.read(&ctx, ResourceType::Patient, &pid2, None)?;
                    let patient: Value = serde_json::from_str(&p.content)
                        .map_err(|e| ApiError::internal(format!("Patient JSON: {e}")))?;
                    let own = user.facility.to_string();
                    let registry = (svc.facility(&ctx, &own)?, svc.facility(&ctx, &addressee)?);
                    let (Some(from), Some(to)) = registry else {
                        return Err(ApiError::bad_request("紹介先の医療機関がネットワークに登録されていません"));
                    };
                    let now = musubi_fhir::datetime::now_ms();
                    let l = Letter {
                        id: letter_id("W", now)?,
                        now_ms: now,
                        sender: Facility { code: from.code, name: from.name },
                        addressee: Facility { code: to.code, name: to.name },
                        addressee_doctor: form.get("addressee_doctor").to_owned(),
                        author: user.name.clone(),
                        patient,
                        texts: letter::SECTIONS
                            .iter()
                            .map(|(k, _, _)| ((*k).to_owned(), form.get(k).to_owned()))
                            .collect(),
                    };
                    Some(letter::build(&l).to_string().into_bytes())
                }
            };
            svc.send_referral(
                &ctx,
                NewReferral { addressee: Some(addressee), document, signature, discharge_summary: discharge, files },
            )
        })
        .await;
    match sent {
        Ok(r) => Ok(Redirect::to(&format!("/referrals/{}?msg=sent", r.id)).into_response()),
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::BadRequest
                    | ErrorKind::Unprocessable
                    | ErrorKind::UnsupportedMediaType
                    | ErrorKind::PayloadTooLarge
                    | ErrorKind::Conflict
            ) =>
        {
            // The form again, as typed, with what was wrong.
            let d = draft(&web, &c, &pid).await?;
            let facilities = addressees(&web, &c.ctx, c.user.facility.as_str()).await?;
            let mut r = new_page(&c, &d, &facilities, Some(&e.summary()), &u.form);
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

fn signer_facts(r: &SignerResult, several: bool) -> Markup {
    html! {
        @if several { p { (signature_tag(r.status)) " " (r.message) } }
        @if let Some(signer) = &r.signer {
            dl.facts {
                dt { "署名者" } dd { (signer.subject) }
                @if !signer.hc_roles.is_empty() {
                    dt { "資格（hcRole）" }
                    dd { (signer.hc_roles.iter().map(HcRole::display).collect::<Vec<_>>().join("、")) }
                }
                dt { "発行者" } dd { (signer.issuer) }
                dt { "有効期間" } dd { (html::date_ms(signer.not_before)) "〜" (html::date_ms(signer.not_after)) }
                dt { "シリアル番号" } dd { code { (signer.serial) } }
                dt { "失効確認" } dd {
                    @match r.revocation {
                        Some(Revocation::Revoked) => span.tag.danger { (Revocation::Revoked.label_ja()) },
                        Some(Revocation::NotRevoked) => span.tag.ok { (Revocation::NotRevoked.label_ja()) },
                        Some(Revocation::Unknown) => span.tag.warn { (Revocation::Unknown.label_ja()) },
                        None => "（証明書チェーンが確認できないため未確認）",
                    }
                }
            }
            @if !signer.chain.is_empty() {
                p.note { "証明書チェーン: " (signer.chain.join(" → ")) }
            }
        }
        @if let Some(t) = r.signing_time { p.note { "署名者が記録した署名時刻: " (html::datetime_ms(t)) "（参考）" } }
    }
}

fn signature_block(v: &ReferralView) -> Markup {
    let s = &v.signature_report;
    // Reports stored before results were kept per signer have only the lead signer.
    let lead = SignerResult {
        status: s.status,
        message: s.message.clone(),
        signer: s.signer.clone(),
        signing_time: s.signing_time,
        revocation: s.revocation,
    };
    let signers = if s.signers.is_empty() { std::slice::from_ref(&lead) } else { s.signers.as_slice() };
    let several = signers.len() > 1;
    html! {
        section.card class=(match s.status { SignatureStatus::Valid => "card sig ok", SignatureStatus::Unsigned => "card sig", _ => "card sig bad" }) {
            h2 { "電子署名 " (signature_tag(s.status)) }
            p { (s.message) }
            @if several { p.note { "署名者 " (signers.len()) " 名の結果:" } }
            @if s.status != SignatureStatus::Unsigned {
                @for r in signers { (signer_facts(r, several)) }
            }
            p.note { "検証時点: " (html::datetime_ms(s.checked_at)) "（ネットワークが受け付けた時刻）・開封時に現在の信頼するルート証明書と失効リスト（CRL）で再検証しています。" }
            @if let Some(at) = &v.signature_at_sending {
                @if at.status != s.status {
                    p.note { "受付時の検証結果: " (signature_tag(at.status)) " " (at.message) }
                }
            }
        }
    }
}

async fn open(State(web): State<Web>, c: Clinician, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = query(q);
    let ctx = c.ctx.clone();
    let rid = id.clone();
    let own = c.user.facility.to_string();
    let v = web.call(move |svc| svc.open_referral(&ctx, &rid)).await?;
    let s = &v.summary;
    let addressed_to_us = s.addressee.code == own;
    let msg = match q_get(&q, "msg") {
        "sent" => Some(notice("ok", "紹介状を送信しました。宛先の医療機関が開くと「受領済み」になります。")),
        _ if v.received_now => {
            Some(notice("ok", "この紹介状を受領しました（受領日時と受領者が紹介元に通知されます）。"))
        }
        _ => None,
    };
    Ok(page(
        "診療情報提供書",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            p.crumb { a href=(if addressed_to_us { "/referrals" } else { "/referrals?box=out" }) { "← " (if addressed_to_us { "受信箱" } else { "送信箱" }) } }
            @if let Some(m) = msg { (m) }
            section.card {
                h1 { (s.title.as_deref().unwrap_or("診療情報提供書")) " " (status_tag(s)) @if s.reply_to.is_some() { " " span.tag { "返書" } } }
                dl.facts {
                    dt { "患者" } dd { (patient_line(s)) }
                    dt { "紹介元" } dd { (facility_label(&s.sender.code, &s.sender.name)) @if let Some(a) = &s.author { "　" (a) } }
                    dt { "紹介先" } dd { (facility_label(&s.addressee.code, &s.addressee.name)) }
                    dt { "送信" } dd { (html::datetime_ms(s.created)) }
                    dt { "受領" } dd { @if let Some(at) = s.received_at { (html::datetime_ms(at)) "　" (s.received_by_name.clone().or_else(|| s.received_by.clone()).unwrap_or_default()) } @else { "未受領" } }
                    @if let Some(d) = s.delete_after { dt { "削除予定" } dd { (html::date_ms(d)) } }
                }
                div.actions {
                    @if let Some(pid) = &v.patient_id { @if !addressed_to_us { a.button.secondary href={"/patients/" (pid)} { "患者の記録" } } }
                    @if addressed_to_us && s.reply_to.is_none() { a.button href={"/referrals/" (s.id) "/reply"} { "返書を作成" } }
                    @for r in &s.replies { a.button.secondary href={"/referrals/" (r)} { "返書を開く" } }
                    @if let Some(orig) = &s.reply_to { a.button.secondary href={"/referrals/" (orig)} { "元の紹介状" } }
                }
                // The sender may take back a letter sent by mistake (the service asks the gate).
                @if s.sender.code == own && s.deleted_at.is_none() {
                    form.actions method="post" action={"/referrals/" (s.id) "/withdraw"} {
                        (csrf_field(&c.csrf))
                        p.note { "誤って送信した場合は取り下げられます。取り下げると宛先では開けなくなります（取り消せません）。" }
                        button.danger type="submit" { "この紹介状を取り下げる" }
                    }
                }
            }
            (signature_block(&v))
            section.card.doc { (record_html::document(&v.document)) }
            @if let Some(ds) = &v.discharge_summary {
                section.card.doc { h2 { "添付: 退院時サマリー" } (record_html::document(ds)) }
            }
            @if !s.files.is_empty() {
                section.card {
                    h2 { "添付ファイル" }
                    ul.items {
                        @for f in &s.files {
                            li {
                                a href={"/referrals/" (s.id) "/files/" (f.seq)} download { (f.filename) }
                                " " span.tag { (f.content_type) } " " (f.size / 1024) " KB"
                                br; small.note { "SHA-256 " code { (f.sha256) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn file(State(web): State<Web>, c: Clinician, Path((id, seq)): Path<(String, i64)>) -> Result<Response> {
    let ctx = c.ctx.clone();
    let f = web.call(move |svc| svc.referral_file(&ctx, &id, seq)).await?;
    let disposition = f.content_disposition();
    let mut r = (StatusCode::OK, f.data).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&f.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// The replying facility's own registration of the patient a letter names (found by the
/// insurance identity, through the gate); without one, the letter's patient without the other
/// facility's patient number (that number is not ours to file under).
fn own_registration(
    svc: &musubi_service::Service,
    ctx: &musubi_service::Ctx,
    named: &Value,
    own: &str,
) -> std::result::Result<Value, ApiError> {
    let local_system = format!("{}{own}", musubi_domain::systems::LOCAL_PATIENT_ID_PREFIX);
    let insurance = named["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == musubi_domain::systems::INSURANCE_MEMBER_ID)
        .and_then(|i| i["value"].as_str());
    if let Some(ins) = insurance {
        let r = svc.search(
            ctx,
            ResourceType::Patient,
            &[("identifier".into(), format!("{}|{ins}", musubi_domain::systems::INSURANCE_MEMBER_ID))],
        )?;
        let b: Value = serde_json::from_str(&r.json).map_err(|e| ApiError::internal(format!("search JSON: {e}")))?;
        let ours = b["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).find(|p| {
            p["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["system"].as_str() == Some(local_system.as_str()))
        });
        if let Some(p) = ours {
            return Ok(p.clone());
        }
    }
    let mut p = named.clone();
    if let Some(ids) = p["identifier"].as_array_mut() {
        ids.retain(|i| {
            !i["system"].as_str().is_some_and(|s| s.starts_with(musubi_domain::systems::LOCAL_PATIENT_ID_PREFIX))
        });
    }
    Ok(p)
}

fn reply_page(c: &Clinician, v: &ReferralView, message: Option<&str>, text: &str) -> Response {
    let s = &v.summary;
    page(
        "返書を作成",
        Nav::Clinician(&c.user, &c.csrf),
        html! {
            p.crumb { a href={"/referrals/" (s.id)} { "← 元の紹介状" } }
            h1 { "返書を作成" }
            @if let Some(m) = message { (notice("error", m)) }
            p { (facility_label(&s.sender.code, &s.sender.name)) @if let Some(a) = &s.author { "　" (a) " 先生" } " への返書（" (patient_line(s)) "）" }
            form method="post" action={"/referrals/" (s.id) "/reply"} {
                (csrf_field(&c.csrf))
                label { "ご報告（受診の結果・所見・今後の方針）"
                    textarea name="course" rows="10" required { (text) }
                }
                button type="submit" { "返書を送信する" }
            }
        },
    )
}

async fn reply_form(State(web): State<Web>, c: Clinician, Path(id): Path<String>) -> Result<Response> {
    let ctx = c.ctx.clone();
    let v = web.call(move |svc| svc.open_referral(&ctx, &id)).await?;
    Ok(reply_page(&c, &v, None, ""))
}

async fn reply_post(State(web): State<Web>, c: Clinician, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &c.csrf)?;
    let text = form.get("course").to_owned();
    let ctx = c.ctx.clone();
    let user = c.user.clone();
    let rid = id.clone();
    let t2 = text.clone();
    let sent = web
        .call(move |svc| {
            if t2.is_empty() {
                return Err(ApiError::bad_request("ご報告の内容を入力してください"));
            }
            let original = svc.open_referral(&ctx, &rid)?;
            // The patient as the original letter names them, then as this facility holds them.
            let named = original.document["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| &e["resource"])
                .find(|r| r["resourceType"] == "Patient")
                .cloned()
                .ok_or_else(|| ApiError::bad_request("元の紹介状に患者の情報がありません"))?;
            let patient = own_registration(svc, &ctx, &named, user.facility.as_str())?;
            let s = &original.summary;
            let now = musubi_fhir::datetime::now_ms();
            let l = Letter {
                id: letter_id("R", now)?,
                now_ms: now,
                sender: Facility {
                    code: user.facility.to_string(),
                    name: s.addressee.name.clone().unwrap_or_default(),
                },
                addressee: Facility { code: s.sender.code.clone(), name: s.sender.name.clone().unwrap_or_default() },
                addressee_doctor: s.author.clone().unwrap_or_default(),
                author: user.name.clone(),
                patient,
                texts: vec![
                    ("purpose".into(), "ご紹介いただいた患者さんについてのご報告（返書）".into()),
                    ("course".into(), t2.clone()),
                ],
            };
            svc.reply_referral(
                &ctx,
                &rid,
                NewReferral {
                    addressee: Some(s.sender.code.clone()),
                    document: Some(letter::build(&l).to_string().into_bytes()),
                    ..NewReferral::default()
                },
            )
        })
        .await;
    match sent {
        Ok(r) => Ok(Redirect::to(&format!("/referrals/{}?msg=sent", r.id)).into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Unprocessable) => {
            let ctx = c.ctx.clone();
            let v = web.call(move |svc| svc.open_referral(&ctx, &id)).await?;
            let mut r = reply_page(&c, &v, Some(&e.summary()), &text);
            *r.status_mut() = session::status_of(e.kind);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /referrals/{id}/withdraw`: the sender withdraws (取り下げ) a letter.
async fn withdraw_post(State(web): State<Web>, c: Clinician, Path(id): Path<String>, form: Form) -> Result<Response> {
    session::check_csrf(&form, &c.csrf)?;
    let ctx = c.ctx.clone();
    web.call(move |svc| svc.withdraw_referral(&ctx, &id)).await?;
    Ok(Redirect::to("/referrals?box=out&msg=withdrawn").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_ids_fit_the_bundle_identifier() {
        for _ in 0..200 {
            let id = letter_id("W", 1_793_649_600_000).unwrap();
            assert!(id.starts_with("W20261103-") && id.len() == 18, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{id}");
            let key = format!("1318814790^2026^{id}");
            assert!(key.parse::<musubi_domain::BundleIdentifier>().is_ok(), "{key}");
        }
    }
}
