//! The referral pages (文書送受信) over HTTP: a hospital doctor writes a 診療情報提供書 to a clinic
//! from the patient's page (the form pre-filled from the record, 未告知 left out) with a PDF
//! attached; the clinic's inbox shows it not yet received; its doctor opens it (received, with
//! who and when, as the hospital's outbox then shows), downloads the file and replies; a clerk
//! may list but not open; another hospital sees nothing; a letter made by an EMR and signed
//! (CMS, made with the `openssl` command) shows its signature result.

use crate::common::*;
use musubi_domain::Profession;

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

fn plain(html: &str) -> String {
    let mut out = String::new();
    let mut tag = false;
    for c in html.chars() {
        match c {
            '<' => tag = true,
            '>' => {
                tag = false;
                out.push(' ');
            }
            c if !tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The id in a `/referrals/{id}?msg=sent` redirect.
fn sent_id(p: &Page) -> String {
    assert_eq!(p.status, 303, "{}", p.text());
    let loc = p.location.clone().unwrap();
    loc.trim_start_matches("/referrals/").split('?').next().unwrap().to_owned()
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed for this test (Debian package openssl; scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn write_send_receive_open_download_and_reply() {
    let w = world();
    let clinic_secret = w.net.user("dr-clinic", "倉石 四郎", Profession::Doctor, &[CLINIC]);
    let clerk_secret = w.net.user("clerk-clinic", "連携 花子", Profession::Clerk, &[CLINIC]);
    let link = format!("/patients/{}", w.patient);

    // The hospital doctor starts from the patient's page.
    let dr = Web::new(&w.net);
    dr.login_clinician("dr-hosp", &w.secrets["dr-hosp"], None);
    let page = dr.get(&link).text();
    let new = format!("/referrals/new?patient={}", w.patient);
    assert!(page.contains(&new), "the patient page offers a referral letter");
    let form = dr.get(&new);
    assert_eq!(form.status, 200);
    let ft = form.text();
    assert!(ft.contains("診療情報提供書を作成") && ft.contains("髙橋 結衣"));
    assert!(ft.contains("結びクリニック（1312345678）"), "the addressees");
    assert!(!ft.contains(r#"<option value="1318814790""#), "not addressed to oneself");
    // Pre-filled from the record: active diagnoses, allergies, current medication; never 未告知.
    assert!(
        ft.contains("２型糖尿病")
            && ft.contains("ペニシリン系抗菌薬（アナフィラキシー）")
            && ft.contains("メトホルミン"),
        "{ft}"
    );
    assert!(!ft.contains("胃癌"), "未告知 diagnoses are not put in a letter for the doctor");
    let csrf = form.csrf();

    // Refused without the CSRF token; a non-PDF "PDF" is refused with the reason.
    let fields = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("patient", w.patient.clone()),
            ("addressee", CLINIC.to_owned()),
            ("addressee_doctor", "倉石 四郎".to_owned()),
            ("purpose", "２型糖尿病の血糖管理の継続をお願いします。".to_owned()),
            ("present", "HbA1c が上昇傾向です。".to_owned()),
            ("problem", "２型糖尿病\n本態性高血圧症".to_owned()),
            ("allergy", "ペニシリン系抗菌薬（アナフィラキシー）".to_owned()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| v.iter().map(|(k, x)| (*k, x.clone())).collect::<Vec<_>>();
    let f = as_refs(&fields(""));
    let r = dr.post_multipart("/referrals/new", &f.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    let f = as_refs(&fields(&csrf));
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bad = dr.post_multipart("/referrals/new", &f, &[("files", "x.pdf", "application/pdf", b"MZ\x90\x00")]);
    assert_eq!(bad.status, 415, "{}", bad.text());
    assert!(bad.text().contains("x.pdf の内容が PDF ではありません"), "{}", bad.text());
    assert!(bad.text().contains("HbA1c が上昇傾向です。"), "the form keeps what was written");

    // Sent, with a PDF.
    let r = dr.post_multipart("/referrals/new", &f, &[("files", "経過報告.pdf", "application/pdf", PDF)]);
    let id = sent_id(&r);
    let v = dr.follow(&r);
    assert_eq!(v.status, 200);
    let vt = plain(&v.text());
    assert!(vt.contains("紹介状を送信しました") && vt.contains("未受領") && vt.contains("署名なし"), "{vt}");
    assert!(vt.contains("２型糖尿病の血糖管理の継続をお願いします。") && vt.contains("紹介目的"), "{vt}");
    assert!(vt.contains("経過報告.pdf"));
    let out = plain(&dr.get("/referrals?box=out").text());
    assert!(out.contains("未受領") && out.contains("髙橋 結衣") && out.contains("結びクリニック"), "{out}");

    // Another hospital's doctor: nothing.
    let other = Web::new(&w.net);
    other.login_clinician("dr-other", &w.secrets["dr-other"], None);
    assert_eq!(other.get(&format!("/referrals/{id}")).status, 404);
    assert!(plain(&other.get("/referrals").text()).contains("紹介状はありません"));

    // The clinic's clerk lists it but may not open it.
    let clerk = Web::new(&w.net);
    clerk.login_clinician("clerk-clinic", &clerk_secret, None);
    let inbox = plain(&clerk.get("/referrals").text());
    assert!(inbox.contains("未受領") && inbox.contains("髙橋 結衣") && inbox.contains("東京結び病院"), "{inbox}");
    let denied = clerk.get(&format!("/referrals/{id}"));
    assert_eq!(denied.status, 403, "{}", denied.text());

    // The clinic's doctor: the inbox says one not yet received; opening it receives it.
    let to = Web::new(&w.net);
    to.login_clinician("dr-clinic", &clinic_secret, None);
    let inbox = to.get("/referrals");
    assert!(plain(&inbox.text()).contains("未受領 1"), "{}", inbox.text());
    let opened = to.get(&format!("/referrals/{id}"));
    assert_eq!(opened.status, 200);
    let ot = plain(&opened.text());
    assert!(ot.contains("この紹介状を受領しました") && ot.contains("受領済み"), "{ot}");
    assert!(ot.contains("２型糖尿病の血糖管理の継続をお願いします。") && ot.contains("ペニシリン系抗菌薬"), "{ot}");
    assert!(ot.contains("結城 一郎") && ot.contains("倉石 四郎"), "author and addressee doctor: {ot}");
    let file = to.get(&format!("/referrals/{id}/files/0"));
    assert_eq!(file.status, 200);
    assert_eq!(file.bytes, PDF);
    assert_eq!(file.header("content-type"), "application/pdf");
    assert!(file.header("content-disposition").contains("filename*=UTF-8''"), "{}", file.header("content-disposition"));
    assert!(plain(&to.get("/referrals?status=sent").text()).contains("紹介状はありません"), "nothing left unreceived");

    // The hospital sees the receipt: when and by whom.
    let out = plain(&dr.get("/referrals?box=out").text());
    assert!(out.contains("受領済み") && out.contains("倉石 四郎"), "{out}");

    // A reply (返書) goes back to the hospital, linked to the letter.
    let rf = to.get(&format!("/referrals/{id}/reply"));
    assert_eq!(rf.status, 200);
    let rcsrf = rf.csrf();
    assert_eq!(to.post(&format!("/referrals/{id}/reply"), &[("course", "x")]).status, 403);
    let r = to.post(
        &format!("/referrals/{id}/reply"),
        &[("csrf", &rcsrf), ("course", "本日受診されました。内服を継続し、3か月ごとに経過をみます。")],
    );
    let reply = sent_id(&r);
    let inbox = plain(&dr.get("/referrals").text());
    assert!(inbox.contains("返書") && inbox.contains("結びクリニック") && inbox.contains("未受領"), "{inbox}");
    let rv = plain(&dr.get(&format!("/referrals/{reply}")).text());
    assert!(rv.contains("本日受診されました。") && rv.contains("元の紹介状"), "{rv}");
    let orig = plain(&dr.get(&format!("/referrals/{id}")).text());
    assert!(orig.contains("返書を開く"), "{orig}");

    // The sender withdraws the letter from its page (the addressee is offered no such button).
    assert!(!plain(&to.get(&format!("/referrals/{id}")).text()).contains("この紹介状を取り下げる"));
    let page = dr.get(&format!("/referrals/{id}"));
    assert!(plain(&page.text()).contains("この紹介状を取り下げる"), "{}", page.text());
    assert_eq!(dr.post(&format!("/referrals/{id}/withdraw"), &[]).status, 403, "no CSRF token");
    let r = dr.post(&format!("/referrals/{id}/withdraw"), &[("csrf", &page.csrf())]);
    let out = plain(&dr.follow(&r).text());
    assert!(out.contains("紹介状を取り下げました") && out.contains("取り下げ"), "{out}");
    let gone = to.get(&format!("/referrals/{id}"));
    assert_eq!(gone.status, 410, "{}", gone.text());
    assert!(plain(&gone.text()).contains("取り下げました"), "{}", gone.text());
    assert!(plain(&to.get("/referrals").text()).contains("取り下げ"), "the addressee's inbox shows it");
}

#[test]
fn a_signed_letter_from_an_emr_shows_its_signature_result() {
    let w = world();
    // A small PKI: a root the network trusts and a doctor's signing certificate, which carries
    // the HPKI hcRole "Medical Doctor" (subjectDirectoryAttributes, DER as the HPKI policy
    // profiles it) and no CRL is configured for its issuer.
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n\
         [v3_ee]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,nonRepudiation\n\
         2.5.29.9=DER:303430320606288185420001312831263024A0223120A00C060A2A830886910F01060101A2100C0E4D65646963616C20446F63746F72\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
            "-subj",
            "/C=JP/O=Musubi/CN=Musubi Test HPKI Root",
            "-config",
            "ca.cnf",
            "-extensions",
            "v3_ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "dr.key",
            "-out",
            "dr.csr",
            "-subj",
            "/C=JP/CN=Dr Yuki Ichiro",
            "-config",
            "ca.cnf",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "dr.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "dr.pem",
            "-days",
            "365",
            "-extfile",
            "ca.cnf",
            "-extensions",
            "v3_ee",
        ],
    );
    w.net.svc.set_trust_roots(musubi_service::signature::TrustRoots::load(&[dir.join("root.pem")]).unwrap());

    // The EMR's letter (the same structure the form makes) and its detached CMS signature.
    let (_, p) = w.net.fhir(&w.net.system_token(HOSP), reqwest::Method::GET, &format!("Patient/{}", w.patient), None);
    let letter = musubi_web::letter::build(&musubi_web::letter::Letter {
        id: "EMR-0001".into(),
        now_ms: musubi_fhir::datetime::now_ms(),
        sender: musubi_web::letter::Facility { code: HOSP.into(), name: "東京結び病院".into() },
        addressee: musubi_web::letter::Facility { code: CLINIC.into(), name: "結びクリニック".into() },
        addressee_doctor: String::new(),
        author: "結城 一郎".into(),
        patient: p,
        texts: vec![("purpose".into(), "電子カルテから署名付きでお送りします。".into())],
    });
    let bytes = letter.to_string().into_bytes();
    std::fs::write(dir.join("letter.json"), &bytes).unwrap();
    openssl(
        dir,
        &[
            "cms",
            "-sign",
            "-binary",
            "-in",
            "letter.json",
            "-signer",
            "dr.pem",
            "-inkey",
            "dr.key",
            "-outform",
            "DER",
            "-out",
            "letter.p7s",
        ],
    );
    let sig = std::fs::read(dir.join("letter.p7s")).unwrap();

    let dr = Web::new(&w.net);
    dr.login_clinician("dr-hosp", &w.secrets["dr-hosp"], None);
    let csrf = dr.get(&format!("/referrals/new?patient={}", w.patient)).csrf();
    let r = dr.post_multipart(
        "/referrals/new",
        &[("csrf", &csrf), ("patient", &w.patient), ("addressee", CLINIC), ("purpose", "")],
        &[
            ("document", "letter.json", "application/fhir+json", &bytes),
            ("signature", "letter.p7s", "application/pkcs7-signature", &sig),
        ],
    );
    let id = sent_id(&r);
    let v = plain(&dr.get(&format!("/referrals/{id}")).text());
    assert!(v.contains("署名有効"), "{v}");
    assert!(v.contains("Dr Yuki Ichiro") && v.contains("Musubi Test HPKI Root"), "the signer and the issuer: {v}");
    assert!(v.contains("資格（hcRole）") && v.contains("医師"), "the signer's healthcare role: {v}");
    assert!(v.contains("失効確認なし"), "no CRL configured: the revocation status is unknown: {v}");
    assert!(v.contains("電子カルテから署名付きでお送りします。"));
    assert!(plain(&dr.get("/referrals?box=out").text()).contains("署名有効"));

    // The same letter with a signature over other bytes: 署名不正, shown as such.
    let mut tampered = letter.clone();
    tampered["identifier"]["value"] = serde_json::json!(format!("{HOSP}^2026^EMR-0002"));
    let r = dr.post_multipart(
        "/referrals/new",
        &[("csrf", &csrf), ("patient", &w.patient), ("addressee", CLINIC), ("purpose", "")],
        &[
            ("document", "letter.json", "application/fhir+json", tampered.to_string().as_bytes()),
            ("signature", "letter.p7s", "application/pkcs7-signature", &sig),
        ],
    );
    let id = sent_id(&r);
    let v = plain(&dr.get(&format!("/referrals/{id}")).text());
    assert!(v.contains("署名不正"), "{v}");
}
