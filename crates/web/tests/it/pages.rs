//! The pages over HTTP, as a browser without JavaScript uses them: the clinician viewer (login,
//! search, the patient page, documents, the emergency summary and its PDF), the refusals (no
//! session, no CSRF token, no consent or care relationship) and emergency access, the patient
//! portal, and the operator console. Every test runs a real server over a fresh store.

use crate::common::*;

fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().unwrap_or_else(|e| {
        panic!("pdftotext is needed to check the PDF ({e}); install Debian's poppler-utils (scripts/test does)")
    });
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Text without tags, for checks that do not care about markup.
fn plain(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
}

fn assert_security_headers(p: &Page) {
    assert_eq!(p.header("content-security-policy"), musubi_web::CSP);
    assert!(musubi_web::CSP.contains("default-src 'none'"), "no script at all");
    assert_eq!(p.header("x-frame-options"), "DENY");
    assert_eq!(p.header("x-content-type-options"), "nosniff");
}

#[test]
fn clinician_login_search_patient_page_documents_and_summary_pdf() {
    let w = world();
    let web = Web::new(&w.net);

    // Without a session every clinician page sends the browser to the login, remembering where.
    let p = web.get("/patients?kana=x");
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/login?next=/patients%3Fkana%3Dx"));
    let login = web.get("/login");
    assert_eq!(login.status, 200);
    assert!(login.text().contains("医療従事者ログイン"));
    assert_security_headers(&login);

    // A wrong password, then a wrong one-time code, are refused with a message.
    let p = web.post("/login", &[("login", "dr-hosp"), ("password", "wrong-password-1"), ("next", "")]);
    assert_eq!(p.status, 401);
    assert!(p.text().contains("ログインIDまたはパスワードが違います"), "{}", p.text());
    let p = web.post("/login", &[("login", "dr-hosp"), ("password", PASSWORD), ("next", "")]);
    assert_eq!(p.status, 200);
    assert!(p.header("set-cookie").contains("HttpOnly"), "{}", p.header("set-cookie"));
    assert!(p.header("set-cookie").contains("SameSite=Strict"));
    // Before the second factor the session opens nothing.
    assert_eq!(web.get("/patients").status, 303);
    let p = web.post("/login/code", &[("code", "000000"), ("next", "/patients")]);
    assert_eq!(p.status, 401);
    assert!(p.text().contains("ワンタイムコードが違います"));
    let page = web.login_clinician("dr-hosp", &w.secrets["dr-hosp"], None);
    assert!(page.text().contains("患者検索"));
    assert!(page.text().contains("結城 一郎（医師・1318814790）"), "{}", page.text());

    // Search: by kana, by kanji name, by birth date, by insurance id (half-width), by local id.
    let link = format!("/patients/{}", w.patient);
    for q in [
        format!("kana={}", enc("タカハシ ユイ")),
        format!("name={}", enc("髙橋")),
        format!("birthdate={}", enc("1958/03/14")),
        format!("insurance={}", enc("06139999:a1:123:01")),
        format!("local_id=H-0001&facility={HOSP}"),
    ] {
        let r = web.get(&format!("/patients?{q}"));
        assert_eq!(r.status, 200, "{q}");
        let t = r.text();
        assert!(t.contains("髙橋 結衣"), "{q}: {t}");
        assert!(t.contains("タカハシ ユイ"), "{q}");
        assert!(t.contains("1958/03/14"), "{q}");
        assert!(t.contains(&link) || t.contains(&format!("/patients/{}", w.clinic_patient)), "{q}");
    }
    let none = web.get(&format!("/patients?kana={}", enc("ヤマダ タロウ"))).text();
    assert!(none.contains("検索結果 0 件"), "{none}");
    assert!(none.contains("該当する患者は見つかりませんでした"));
    let bad = web.get("/patients?birthdate=58-3").text();
    assert!(bad.contains("生年月日は 1970/05/05 の形で入力してください"), "{bad}");
    // The name typed with the common 高 instead of 髙, and in hiragana, still finds her (PDQm
    // $match: variant kanji and kana folded, scored).
    for q in [
        format!("name={}&birthdate=1958-03-14", enc("高橋 結衣")),
        format!("kana={}&birthdate=1958-03-14", enc("たかはし ゆい")),
    ] {
        let fuzzy = web.get(&format!("/patients?{q}")).text();
        assert!(fuzzy.contains("髙橋 結衣"), "{q}: {fuzzy}");
        assert!(fuzzy.contains(&link), "{q}");
    }

    // The patient page: the 6 items with source facility and date, trends, the timeline.
    let p = web.get(&link);
    assert_eq!(p.status, 200);
    assert_eq!(p.header("cache-control"), "no-store");
    let html = p.text();
    let t = plain(&html);
    assert!(t.contains("髙橋 結衣") && t.contains("タカハシ ユイ") && t.contains("1958/03/14"), "{t}");
    assert!(t.contains("東京結び病院（1318814790）") && t.contains("H-0001") && t.contains("C-0001"));
    // Allergies: the drug allergy first, with criticality and reaction.
    let allergy = t.find("ペニシリン系抗菌薬").expect("drug allergy");
    assert!(allergy < t.find("そば").expect("food allergy"), "drug allergies come first");
    assert!(t.contains("重篤度 高") && t.contains("アナフィラキシー") && t.contains("蕁麻疹"));
    // Infections with the positive one marked.
    assert!(t.contains("HCV抗体(判定)") && t.contains("陽性"), "{t}");
    assert!(html.contains(r#"<span class="val abn">陽性</span>"#), "positive infection highlighted");
    // Diagnoses: active ones with status; the 未告知 flag is shown to clinicians.
    assert!(t.contains("２型糖尿病") && t.contains("活動中"));
    assert!(t.contains("急性気管支炎") && t.contains("治癒・消失"));
    assert!(t.contains("胃癌") && t.contains("未告知"), "clinicians see 未告知 items, flagged");
    assert!(t.contains("他に 結びクリニック からも報告"), "a diagnosis reported by two facilities is one row");
    // Labs: latest value, flag, range, a sparkline; HbA1c rose above the range.
    assert!(t.contains("HbA1c(NGSP)") && t.contains("4.9–6"), "{t}");
    assert!(html.contains(r#"<svg class="spark""#));
    assert!(html.contains(&format!("{link}/labs/HbA1c-NGSP")));
    // Prescriptions current (90 days from the last visit) with dosage and source.
    let current = &t[t.find("現在の処方").unwrap()..t.find("最近1年の処方").unwrap()];
    assert!(current.contains("メトホルミン塩酸塩錠２５０ｍｇＭＴ「トーワ」"), "{current}");
    assert!(current.contains("90日分") && current.contains("東京結び病院"));
    assert!(current.contains("ロスバスタチン") && current.contains("結びクリニック"), "{current}");
    // Timeline across facilities, visits and the documents of the day.
    assert!(t.contains("経過（施設をまたいだ時系列）") && t.contains("外来"));
    assert!(html.contains("📄 外来経過記録"));
    assert!(html.contains(r#"<span class="tag kind adm">入院</span>"#), "the admission on the timeline");

    // A lab's page: the plot and every value, newest first.
    let lab = web.get(&format!("{link}/labs/HbA1c-NGSP"));
    assert_eq!(lab.status, 200);
    assert!(lab.text().contains(r#"<svg class="plot""#));
    assert!(lab.text().contains("HbA1c(NGSP) の推移"));
    assert_eq!(web.get(&format!("{link}/labs/NOPE")).status, 404);

    // A progress note (DocumentReference) and the referral letter (a document Bundle) read as
    // documents: the Composition's sections, the author, the referenced allergies.
    let note = link_to(&html, "📄 外来経過記録").unwrap();
    let n = web.get(&note);
    assert_eq!(n.status, 200, "{note}");
    assert!(n.text().contains("経過良好。血圧 128/76 mmHg。"), "{}", n.text());
    let (_, bundles) =
        w.net.fhir(&w.net.system_token(HOSP), reqwest::Method::GET, "Bundle?composition-type=57133-1", None);
    let bid = bundles["entry"][0]["resource"]["id"].as_str().unwrap();
    let doc = web.get(&format!("{link}/documents/Bundle/{bid}"));
    assert_eq!(doc.status, 200);
    let d = plain(&doc.text());
    assert!(doc.text().contains("<h2>診療情報提供書</h2>"), "{d}");
    assert!(d.contains("作成日") && d.contains("作成者"), "{d}");
    assert!(doc.text().contains("<h3>"), "sections as headings");
    assert_eq!(web.get(&format!("{link}/documents/Bundle/nope-nope")).status, 404);

    // The emergency summary: prioritized, every item with its source.
    let s = web.get(&format!("{link}/summary"));
    assert_eq!(s.status, 200);
    let st = plain(&s.text());
    assert!(st.contains("救急用サマリ") && st.contains("髙橋 結衣"));
    let order = [
        "アレルギー・禁忌",
        "感染症",
        "現在の処方・服薬",
        "傷病名（活動中）",
        "主要検査値",
        "入院歴・手術歴",
        "連絡先医療機関・担当医",
    ];
    let pos: Vec<usize> = order.iter().map(|h| st.find(h).unwrap_or_else(|| panic!("{h} missing: {st}"))).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "sections in priority order: {pos:?}");
    assert!(st.contains("ペニシリン系抗菌薬") && st.contains("メトホルミン") && st.contains("東京結び病院"));
    assert!(st.contains("入院") && st.contains("肺炎"), "the admission with its reason: {st}");
    assert!(s.text().contains(&format!("{link}/summary.pdf")));

    // Its PDF: A4, the kanji name, the allergy and the medication in the text.
    let pdf = web.get(&format!("{link}/summary.pdf"));
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.header("content-type"), "application/pdf");
    let cd = pdf.header("content-disposition");
    assert!(cd.starts_with("attachment; filename=\"musubi-summary-") && cd.ends_with(".pdf\""), "{cd}");
    assert!(pdf.bytes.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf.bytes);
    assert!(text.contains("髙橋 結衣"), "{text}");
    assert!(text.contains("ペニシリン系抗菌薬"), "{text}");
    assert!(text.contains("メトホルミン"), "{text}");
    assert!(text.contains("結城 一郎"), "generated by whom: {text}");

    // Logout needs the CSRF token; then the session is gone.
    let csrf = csrf(&html);
    assert_eq!(web.post("/logout", &[("csrf", "forged")]).status, 403);
    let out = web.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert_eq!(out.location.as_deref(), Some("/login"));
    assert_eq!(web.get(&link).status, 303);
    assert_eq!(web.get(&format!("{link}/summary.pdf")).status, 303);
}

#[test]
fn a_user_of_two_facilities_chooses_one() {
    let w = world();
    let web = Web::new(&w.net);
    let p = web.post("/login", &[("login", "dr-two"), ("password", PASSWORD), ("next", "")]);
    assert_eq!(p.status, 200);
    let t = p.text();
    assert!(t.contains("所属施設を選んで"), "{t}");
    assert!(t.contains("東京結び病院（1318814790）") && t.contains("結びクリニック（1312345678）"));
    let page = web.login_clinician("dr-two", &w.secrets["dr-two"], Some(CLINIC));
    assert!(page.text().contains("二宮 三郎（医師・1312345678）"), "{}", page.text());
}

#[test]
fn refusals_without_consent_or_care_csrf_and_emergency_access() {
    let w = world();
    let link = format!("/patients/{}", w.patient);

    // A doctor of a hospital that never treated her: the search finds nothing, the page and
    // the summary answer "not visible" (as for an unknown patient) and offer the ways in.
    let other = Web::new(&w.net);
    other.login_clinician("dr-other", &w.secrets["dr-other"], None);
    let r = other.get(&format!("/patients?kana={}", enc("タカハシ ユイ"))).text();
    assert!(r.contains("検索結果 0 件"), "{r}");
    let p = other.get(&link);
    assert_eq!(p.status, 404);
    let t = p.text();
    assert!(t.contains("この患者の記録は閲覧できません"));
    assert!(!t.contains("ペニシリン") && !t.contains("髙橋"), "nothing of the record leaks: {t}");
    let s = other.get(&format!("{link}/summary"));
    assert_eq!(s.status, 404);
    assert!(!s.text().contains("ペニシリン"));
    assert!(s.text().contains(&format!("{link}/emergency?to=summary")));
    assert_eq!(other.get(&format!("{link}/summary.pdf")).status, 404);
    assert!(other.get(&format!("{link}/labs/HbA1c-NGSP")).status == 404);
    let unknown = other.get("/patients/00000000-no-such-patient");
    assert_eq!(unknown.status, 404, "an unknown patient looks the same");

    // Forms that change something are refused without the session's CSRF token.
    let csrf = csrf(&t);
    assert_eq!(other.post(&format!("{link}/visit-consent"), &[]).status, 403);
    assert_eq!(other.post(&format!("{link}/visit-consent"), &[("csrf", "x")]).status, 403);
    let e = other.post(&format!("{link}/emergency"), &[("reason", "意識障害で救急搬送"), ("to", "summary")]);
    assert_eq!(e.status, 403, "{}", e.text());
    assert!(e.text().contains("CSRF"));
    // A post from another site is refused even with the token.
    let cross = other
        .http
        .post(format!("{}{link}/emergency", w.net.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(form_body(&[("csrf", &csrf), ("reason", "意識障害で救急搬送")]))
        .send()
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    // Still nothing visible.
    assert_eq!(other.get(&link).status, 404);

    // Emergency access (break-glass): a reason is required; then the summary opens at once.
    let form = other.get(&format!("{link}/emergency?to=summary"));
    assert_eq!(form.status, 200);
    assert!(form.text().contains("患者さんの同意なしに記録を開きます"));
    assert!(form.text().contains("ワンタイムコード（再入力）") && form.text().contains("救急搬送"));
    let totp = musubi_service::people::totp_code_now(&w.secrets["dr-other"]).unwrap();
    let short = other.post(
        &format!("{link}/emergency"),
        &[
            ("csrf", &csrf),
            ("reason_code", "emergency-transport"),
            ("reason", "急"),
            ("code", &totp),
            ("to", "summary"),
        ],
    );
    assert_eq!(short.status, 400, "{}", short.text());
    let no_reason = other.post(
        &format!("{link}/emergency"),
        &[("csrf", &csrf), ("reason", "意識障害で救急搬送、既往歴・服薬の確認"), ("code", &totp), ("to", "summary")],
    );
    assert_eq!(no_reason.status, 400, "a reason from the list is required: {}", no_reason.text());
    let wrong_code = other.post(
        &format!("{link}/emergency"),
        &[
            ("csrf", &csrf),
            ("reason_code", "emergency-transport"),
            ("reason", "意識障害で救急搬送、既往歴・服薬の確認"),
            ("code", "000000"),
            ("to", "summary"),
        ],
    );
    assert_eq!(wrong_code.status, if totp == "000000" { 303 } else { 401 }, "{}", wrong_code.text());
    let ok = other.post(
        &format!("{link}/emergency"),
        &[
            ("csrf", &csrf),
            ("reason_code", "emergency-transport"),
            ("reason", "意識障害で救急搬送、既往歴・服薬の確認"),
            ("code", &totp),
            ("to", "summary"),
        ],
    );
    assert_eq!(ok.status, 303, "{}", ok.text());
    assert_eq!(ok.location.as_deref(), Some(format!("{link}/summary").as_str()));
    let s = other.follow(&ok);
    assert_eq!(s.status, 200);
    let st = s.text();
    assert!(st.contains("緊急時の閲覧中") && st.contains("意識障害で救急搬送"), "{st}");
    assert!(st.contains("ペニシリン系抗菌薬"));
    let p = other.get(&link);
    assert_eq!(p.status, 200);
    assert!(p.text().contains("緊急時の閲覧中"));
    let pdf = other.get(&format!("{link}/summary.pdf"));
    assert_eq!(pdf.status, 200);
    assert!(pdf_text(&pdf.bytes).contains("緊急時アクセス"), "the PDF says it was emergency access");

    // In-person consent at a visit opens the record for that facility (the CSRF token needed).
    let clinic = Web::new(&w.net);
    let (pw_secret, fac) = (w.net.user("ns-far", "遠藤 看子", musubi_domain::Profession::Nurse, &[FAR]), FAR);
    let _ = fac;
    clinic.login_clinician("ns-far", &pw_secret, None);
    assert_eq!(clinic.get(&link).status, 404, "another prefecture without consent");
    let c = crate::common::csrf(&clinic.get(&link).text());
    // Without the patient's code (or a paper form) nothing is recorded.
    let r = clinic.post(&format!("{link}/visit-consent"), &[("csrf", &c)]);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = clinic.post(&format!("{link}/visit-consent"), &[("csrf", &c), ("code", "1234 5678")]);
    assert_eq!(r.status, 403, "a made-up code: {}", r.text());
    assert_eq!(clinic.get(&link).status, 404);
    // The patient shows a code from the portal; the nurse enters it.
    let me = portal_login(&w);
    let cp = me.get("/portal/consent-code");
    assert_eq!(cp.status, 200);
    let shown = me.post("/portal/consent-code", &[("csrf", &crate::common::csrf(&cp.text()))]);
    assert_eq!(shown.status, 200, "{}", shown.text());
    let code = {
        let t = shown.text();
        let at = t.find(r#"class="code-big"><strong>"#).unwrap() + r#"class="code-big"><strong>"#.len();
        t[at..at + t[at..].find('<').unwrap()].to_owned()
    };
    let form = clinic.get(&format!("{link}/visit-consent"));
    assert_eq!(form.status, 200);
    assert!(form.text().contains("同意コード"));
    let r = clinic.post(&format!("{link}/visit-consent"), &[("csrf", &c), ("code", &code), ("days", "")]);
    assert_eq!(r.status, 303, "{}", r.text());
    let p = clinic.follow(&r);
    assert_eq!(p.status, 200, "{}", p.text());
    assert!(p.text().contains("来院時の同意を記録しました"));

    // The clerk of the treating hospital sees who the patient is and the visits, not clinical content.
    let clerk = Web::new(&w.net);
    clerk.login_clinician("clerk-hosp", &w.secrets["clerk-hosp"], None);
    let p = clerk.get(&link);
    assert_eq!(p.status, 200);
    let t = plain(&p.text());
    assert!(t.contains("髙橋 結衣"));
    assert!(!t.contains("ペニシリン") && !t.contains("２型糖尿病") && !t.contains("メトホルミン"), "{t}");

    // The operator's review list holds the emergency access; the patient's history shows it.
    let op = Web::new(&w.net);
    op.login_operator(&w.net);
    let list = op.get("/admin/emergency");
    assert_eq!(list.status, 200);
    let lt = list.text();
    assert!(lt.contains("dr-other") && lt.contains("意識障害で救急搬送") && lt.contains("丸の内中央病院"), "{lt}");

    // The patient sees it at once: in the access history (as 緊急, with the reason) and as a notice.
    let h = plain(&me.get("/portal/history").text());
    assert!(h.contains("丸の内中央病院") && h.contains("丸山 次郎") && h.contains("緊急"), "{h}");
    assert!(h.contains("意識障害で救急搬送"), "the stated reason: {h}");
    assert!(me.get("/portal").text().contains("新しいお知らせが"), "the home page says there is news");
    let n = plain(&me.get("/portal/notices").text());
    assert!(n.contains("緊急時の閲覧"), "{n}");

    // The operator reviews it (a note is required; the CSRF token too); the list empties.
    let action = {
        let at = lt.find(r#"action="/admin/emergency/"#).unwrap() + r#"action=""#.len();
        lt[at..at + lt[at..].find('"').unwrap()].to_owned()
    };
    let ocsrf = crate::common::csrf(&lt);
    assert_eq!(op.post(&action, &[("note", "救急外来での正当な閲覧")]).status, 403);
    assert_eq!(op.post(&action, &[("csrf", &ocsrf), ("note", "")]).status, 400);
    let r = op.post(&action, &[("csrf", &ocsrf), ("note", "救急外来での正当な閲覧")]);
    assert_eq!(r.status, 303, "{}", r.text());
    let after = op.follow(&r).text();
    assert!(after.contains("確認済みにしました") && after.contains("確認待ちはありません"), "{after}");
}

/// Registers 髙橋 結衣 in the portal and logs her in; returns her web client.
fn portal_login(w: &World) -> Web {
    let web = Web::new(&w.net);
    let reg = web.get("/portal/register");
    assert_eq!(reg.status, 200);
    assert!(reg.text().contains("利用登録コード"));
    // The hospital's desk issued her an activation code after checking her identity.
    let activation = w.net.svc.issue_activation_code(&musubi_service::Ctx::operator("desk"), &w.patient).unwrap().code;
    let fields = |birth: &'static str| {
        vec![
            ("activation_code", activation.as_str()),
            ("name", "髙橋 結衣"),
            ("kana", "タカハシ ユイ"),
            ("sex", "female"),
            ("birth_date", birth),
            ("prefecture", "東京都"),
            ("city", "千代田区"),
            ("login", "yui"),
            ("password", "Yui-portal-2026"),
            ("password2", "Yui-portal-2026"),
        ]
    };
    let wrong = web.post("/portal/register", &fields("1958-03-15"));
    assert_eq!(wrong.status, 400, "a wrong birth date is refused: {}", wrong.text());
    assert!(wrong.text().contains("髙橋 結衣"), "the form keeps what was typed");
    let ok = web.post("/portal/register", &fields("1958-03-14"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let t = ok.text();
    assert!(t.contains("利用登録が完了しました"));
    let secret: String = {
        let at = t.find(r#"id="totp-secret">"#).unwrap() + r#"id="totp-secret">"#.len();
        t[at..at + t[at..].find('<').unwrap()].chars().filter(|c| !c.is_whitespace()).collect()
    };
    assert!(t.contains("otpauth://totp/"));
    // Login: password, then the code.
    assert_eq!(web.get("/portal/consent").status, 303);
    let p =
        web.post("/portal/login", &[("login", "yui"), ("password", "Yui-portal-2026"), ("next", "/portal/history")]);
    assert_eq!(p.status, 200, "{}", p.text());
    let code = musubi_service::people::totp_code_now(&secret).unwrap();
    let p = web.post("/portal/login/code", &[("code", &code), ("next", "/portal/history")]);
    assert_eq!(p.status, 303, "{}", p.text());
    assert_eq!(p.location.as_deref(), Some("/portal/history"));
    web
}

#[test]
fn portal_registration_settings_history_record_download_and_proxies() {
    let w = world();
    // A clinician opens her page first: that access must show in her history.
    let dr = Web::new(&w.net);
    dr.login_clinician("dr-hosp", &w.secrets["dr-hosp"], None);
    assert_eq!(dr.get(&format!("/patients/{}", w.patient)).status, 200);
    assert_eq!(dr.get(&format!("/patients/{}/summary", w.patient)).status, 200);

    let me = portal_login(&w);
    let home = me.get("/portal");
    assert_eq!(home.status, 200);
    assert!(home.text().contains("髙橋 結衣 さん"), "{}", home.text());

    // Access history: who (facility, profession, name), when, what, why.
    let h = me.get("/portal/history");
    assert_eq!(h.status, 200);
    let ht = plain(&h.text());
    assert!(ht.contains("東京結び病院") && ht.contains("医師") && ht.contains("結城 一郎"), "{ht}");
    assert!(ht.contains("通常"), "{ht}");
    let bad = me.get("/portal/history?from=yesterday");
    assert_eq!(bad.status, 400);

    // Her own record: everything but the 未告知 diagnosis.
    let r = me.get("/portal/record");
    assert_eq!(r.status, 200);
    let rt = plain(&r.text());
    assert!(rt.contains("２型糖尿病") && rt.contains("ペニシリン系抗菌薬") && rt.contains("メトホルミン"), "{rt}");
    assert!(!rt.contains("胃癌") && !rt.contains("未告知"), "未告知 items never reach the patient: {rt}");
    assert_eq!(me.get("/portal/record/labs/HbA1c-NGSP").status, 200);

    // Download as a FHIR Bundle.
    let d = me.get("/portal/record.json");
    assert_eq!(d.status, 200);
    assert!(d.header("content-type").starts_with("application/fhir+json"));
    assert!(d.header("content-disposition").contains("musubi-record-"));
    let b: serde_json::Value = serde_json::from_slice(&d.bytes).unwrap();
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "collection");
    let entries = b["entry"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["resource"]["code"]["text"] == "２型糖尿病"));
    assert!(!entries.iter().any(|e| e["resource"]["code"]["text"] == "胃癌"), "no 未告知 item in the download");
    assert!(entries.iter().all(|e| e["fullUrl"].as_str().unwrap().contains("/fhir/")));

    // Disclosure settings: one-click toggles, refused without the CSRF token.
    let c = me.get("/portal/consent");
    assert_eq!(c.status, 200);
    let ct = c.text();
    assert!(ct.contains("開示設定") && ct.contains("薬剤師") && ct.contains("東京結び病院"), "{ct}");
    let csrf = csrf(&ct);
    let version = {
        let at = ct.find(r#"name="version" value=""#).unwrap() + r#"name="version" value=""#.len();
        ct[at..at + ct[at..].find('"').unwrap()].to_owned()
    };
    let toggle = [("version", version.as_str()), ("action", "profession"), ("key", "pharmacist"), ("value", "off")];
    assert_eq!(me.post("/portal/consent", &toggle).status, 403);
    let mut with = toggle.to_vec();
    with.push(("csrf", &csrf));
    let s = me.post("/portal/consent", &with);
    assert_eq!(s.status, 303, "{}", s.text());
    let c = me.follow(&s);
    assert!(c.text().contains("保存しました"));
    assert!(
        c.text().contains(r#""code":"pharmacist""#) || c.text().contains("pharmacist"),
        "the FHIR Consent shows it"
    );
    // The same (now stale) version again is a conflict, not an overwrite.
    let stale = me.post("/portal/consent", &with);
    assert_eq!(stale.location.as_deref(), Some("/portal/consent?msg=conflict"));
    // Close everything: the treating doctor no longer sees her, and the denial is in her history.
    let ct = me.get("/portal/consent").text();
    let version = {
        let at = ct.find(r#"name="version" value=""#).unwrap() + r#"name="version" value=""#.len();
        ct[at..at + ct[at..].find('"').unwrap()].to_owned()
    };
    let s = me.post(
        "/portal/consent",
        &[("csrf", &csrf), ("version", &version), ("action", "closed"), ("key", ""), ("value", "on")],
    );
    assert_eq!(s.status, 303);
    assert!(me.follow(&s).text().contains("すべての開示を停止しています"));
    let clinic_doc = Web::new(&w.net);
    let secret = w.net.user("dr-clinic", "倉石 四郎", musubi_domain::Profession::Doctor, &[CLINIC]);
    clinic_doc.login_clinician("dr-clinic", &secret, None);
    // The clinic's doctor: the hospital's registration is closed (answered as unknown); the
    // clinic's own registration still opens, with only what the clinic sent itself.
    assert_eq!(clinic_doc.get(&format!("/patients/{}", w.patient)).status, 404);
    let p = clinic_doc.get(&format!("/patients/{}", w.clinic_patient));
    assert_eq!(p.status, 200, "the clinic still sees what it sent itself");
    let t = plain(&p.text());
    assert!(t.contains("そば"), "the clinic's own allergy record: {t}");
    assert!(!t.contains("ペニシリン系抗菌薬"), "the hospital's allergy record is closed to the clinic: {t}");
    let h = plain(&me.get("/portal/history").text());
    assert!(h.contains("倉石 四郎"), "{h}");

    // Notices page.
    let n = me.get("/portal/notices");
    assert_eq!(n.status, 200);
    assert!(n.text().contains("お知らせ"));

    // A move: the form names the prefecture and city; a wrong one keeps what was typed.
    let m = me.get("/portal/residence");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("転居の届出") && m.text().contains("神奈川県"));
    assert_eq!(me.post("/portal/residence", &[("prefecture", "神奈川県"), ("city", "横浜市")]).status, 403);
    let bad = me.post("/portal/residence", &[("csrf", &csrf), ("prefecture", "どこか"), ("city", "横浜市")]);
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("都道府県名") && bad.text().contains("横浜市"), "{}", bad.text());
    let moved = me.post("/portal/residence", &[("csrf", &csrf), ("prefecture", "神奈川県"), ("city", "横浜市")]);
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert!(moved.text().contains("神奈川県 横浜市 への転居を記録しました"), "{}", moved.text());
    let person =
        w.net.store.current(musubi_fhir::ResourceType::Patient, &w.patient).unwrap().unwrap().meta.person_id.unwrap();
    let lived = w.net.store.read(|r| r.residence_prefectures_since(&person, 0)).unwrap();
    assert!(lived.contains(&14), "Kanagawa is in the residence history: {lived:?}");

    // Proxies: a family member registers as a proxy, she grants, the proxy logs in for her.
    let fam = Web::new(&w.net);
    let r = fam.post(
        "/portal/register-proxy",
        &[("name", "髙橋 一郎"), ("login", "ichiro"), ("password", "Ichiro-proxy-2026")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    let psecret: String = {
        let at = t.find(r#"id="totp-secret">"#).unwrap() + r#"id="totp-secret">"#.len();
        t[at..at + t[at..].find('<').unwrap()].chars().filter(|c| !c.is_whitespace()).collect()
    };
    let pr = me.get("/portal/proxies");
    assert_eq!(pr.status, 200);
    assert_eq!(me.post("/portal/proxies", &[("login", "ichiro"), ("relation", "家族")]).status, 403);
    let g = me.post(
        "/portal/proxies",
        &[("csrf", &csrf), ("login", "ichiro"), ("relation", "家族"), ("view_records", "1"), ("view_history", "1")],
    );
    assert_eq!(g.status, 303, "{}", g.text());
    let list = me.follow(&g).text();
    assert!(list.contains("代理人に権限を与えました") && list.contains("髙橋 一郎") && list.contains("家族"), "{list}");
    let p = fam.post("/portal/login", &[("login", "ichiro"), ("password", "Ichiro-proxy-2026"), ("next", "")]);
    assert_eq!(p.status, 200, "{}", p.text());
    let code = musubi_service::people::totp_code_now(&psecret).unwrap();
    let p = fam.post("/portal/login/code", &[("code", &code), ("next", "")]);
    assert_eq!(p.status, 303, "{}", p.text());
    let home = fam.follow(&p);
    assert!(home.text().contains("代理人: 家族"), "{}", home.text());
    let h = fam.get("/portal/history");
    assert_eq!(h.status, 200, "the proxy may read the history");
    assert!(!fam.get("/portal").text().contains(r#"href="/portal/proxies""#), "a proxy does not manage proxies");

    // Logout.
    let out = me.post("/portal/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert_eq!(me.get("/portal/record").status, 303);
}

#[test]
fn operator_console_facilities_users_audit_and_the_mpi_queue() {
    let w = world();
    // A doubtful duplicate at the clinic: same name and birth date, no insurance id.
    let mut dup = data::patient(&data::YUI, CLINIC, "C-0002");
    dup["identifier"].as_array_mut().unwrap().truncate(1);
    let (s, b) = w.net.fhir(&w.net.system_token(CLINIC), reqwest::Method::POST, "Patient", Some(&dup));
    assert_eq!(s, 201, "{b}");

    let op = Web::new(&w.net);
    let p = op.get("/admin");
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/admin/login?next=/admin"));
    let bad = op.post("/admin/login", &[("token", "not-the-token")]);
    assert_eq!(bad.status, 401);
    let home = op.login_operator(&w.net);
    assert!(home.text().contains("運営事務局"));
    let csrf = csrf(&home.text());

    // Facilities: the list and a new one.
    let f = op.get("/admin/facilities");
    assert!(f.text().contains("東京結び病院") && f.text().contains("1318814790"));
    let new_fac = [
        ("code", "1319999990"),
        ("name", "結び第二病院"),
        ("class", "hospital"),
        ("prefecture", "13"),
        ("area", "1301"),
        ("area_name", "区中央部"),
        ("cities", ""),
        ("discloses", "1"),
        ("views", "1"),
    ];
    assert_eq!(op.post("/admin/facilities", &new_fac).status, 403);
    let mut with = new_fac.to_vec();
    with.push(("csrf", &csrf));
    let r = op.post("/admin/facilities", &with);
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(op.follow(&r).text().contains("結び第二病院"));
    let mut bad_code = with.clone();
    bad_code[0] = ("code", "12345");
    let r = op.post("/admin/facilities", &bad_code);
    assert_eq!(r.status, 400, "{}", r.text());

    // Users: a new nurse; the TOTP secret is shown once.
    let u = [
        ("csrf", csrf.as_str()),
        ("login", "ns-second"),
        ("name", "看護 花"),
        ("kana", "カンゴ ハナ"),
        ("profession", "nurse"),
        ("facilities", "1319999990"),
        ("password", "Nurse-pass-2026"),
    ];
    let r = op.post("/admin/users", &u);
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    assert!(t.contains("利用者 <code>ns-second</code> を登録しました") && t.contains("otpauth://"), "{t}");
    assert!(t.contains("看護 花") && t.contains("結び第二病院"));
    let dupe = op.post("/admin/users", &u);
    assert_eq!(dupe.status, 409, "{}", dupe.text());

    // A clinician's access, then the audit report finds it, by user and as CSV.
    let dr = Web::new(&w.net);
    dr.login_clinician("dr-hosp", &w.secrets["dr-hosp"], None);
    assert_eq!(dr.get(&format!("/patients/{}", w.patient)).status, 200);
    let a = op.get("/admin/audit?user=dr-hosp");
    assert_eq!(a.status, 200);
    let at = a.text();
    assert!(at.contains("dr-hosp") && at.contains("viewer"), "{at}");
    assert!(at.contains(&w.patient));
    let csv = op.get("/admin/audit?user=dr-hosp&format=csv");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    let body = csv.text();
    assert!(body.starts_with("seq,recorded,agent,"), "{body}");
    assert!(body.lines().any(|l| l.contains("\"dr-hosp\"") && l.contains("\"viewer\"")), "{body}");
    assert_eq!(op.get("/admin/audit?from=nonsense").status, 400);

    // The MPI review queue: the two records side by side, the differences marked; keep apart.
    let q = op.get("/admin/mpi");
    assert_eq!(q.status, 200);
    let qt = q.text();
    assert!(qt.contains("C-0002") && (qt.contains("H-0001") || qt.contains("C-0001")), "{qt}");
    assert!(qt.contains("東京結び病院") || qt.contains("結びクリニック"));
    assert!(qt.contains(r#"<tr class="differs"><th scope="row">被保険者番号"#) || qt.contains("被保険者番号"), "{qt}");
    assert!(qt.contains("髙橋 結衣") && qt.contains("被保険者番号"));
    let item = {
        let at = qt.find(r#"action="/admin/mpi/"#).unwrap() + r#"action="/admin/mpi/"#.len();
        qt[at..at + qt[at..].find('"').unwrap()].to_owned()
    };
    assert_eq!(op.post(&format!("/admin/mpi/{item}"), &[("decision", "apart")]).status, 403);
    assert_eq!(op.post(&format!("/admin/mpi/{item}"), &[("csrf", &csrf), ("decision", "maybe")]).status, 400);
    let r = op.post(&format!("/admin/mpi/{item}"), &[("csrf", &csrf), ("decision", "apart")]);
    assert_eq!(r.status, 303, "{}", r.text());
    let after = op.follow(&r).text();
    assert!(after.contains("別人として分けました"));
    assert!(!after.contains(&format!("/admin/mpi/{item}\"")), "the item is resolved");
    // Resolving again: not found.
    assert_eq!(op.post(&format!("/admin/mpi/{item}"), &[("csrf", &csrf), ("decision", "link")]).status, 404);

    // Clinicians and patients cannot open the console; the operator's logout ends it.
    let dr_admin = dr.get("/admin/mpi");
    assert_eq!(dr_admin.status, 303, "a clinician's session is not an operator's");
    let out = op.post("/admin/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert_eq!(op.get("/admin/mpi").status, 303);
}
