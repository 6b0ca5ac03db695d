//! The sender withdraws (取り下げ) a letter sent by mistake, at service level on the embedded
//! store: [`Service::withdraw_referral`] is for the sending facility only (the addressee is
//! refused, another facility is told nothing, a clerk may not), deletes the letter's document
//! as `DELETE /Bundle?identifier=…` does and marks the letter withdrawn in the same
//! transaction, audited; a second withdrawal answers 410; the retention sweep leaves a withdrawn
//! letter as it is.

use musubi_domain::audit::AuditOutcome;
use musubi_domain::{FacilityCode, Profession};
use musubi_fhir::ResourceType;
use musubi_gate::{Actor, UserActor};
use musubi_service::referral::ReferralStatus;
use musubi_service::{Ctx, ErrorKind, Service};
use musubi_store::Store;
use serde_json::{Value, json};

const SENDER: &str = "1318814790";
const ADDRESSEE: &str = "1311234567";
const OTHER: &str = "1319999990";

fn register(svc: &Service, code: &str, name: &str) {
    let row = musubi_store::FacilityRow {
        code: code.into(),
        name: name.into(),
        class: "hospital".into(),
        prefecture: 13,
        area: "1301".into(),
        area_name: "区中央部".into(),
        discloses: true,
        views: true,
    };
    svc.register_facility(&Ctx::operator("test"), row, vec![]).unwrap();
}

fn user(login: &str, profession: Profession, facility: &str) -> Ctx {
    Ctx {
        actor: Actor::User(UserActor {
            user_id: format!("id-{login}"),
            login: login.into(),
            name: format!("{login} 先生"),
            profession,
            facility: facility.parse::<FacilityCode>().unwrap(),
        }),
        address: Some("127.0.0.1".into()),
        base_url: String::new(),
    }
}

fn system(facility: &str) -> Ctx {
    Ctx {
        actor: Actor::System { name: format!("emr-{facility}"), facility: facility.parse().unwrap() },
        address: None,
        base_url: String::new(),
    }
}

fn referral_doc(local: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../reference/jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json"
    );
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    d["identifier"]["value"] = json!(format!("{SENDER}^2024^{local}"));
    d
}

fn audits(store: &Store, subtype: &str) -> Vec<Value> {
    store
        .read(|r| r.audit_page(0, 100_000))
        .unwrap()
        .iter()
        .map(|a| serde_json::from_str::<Value>(&a.record).unwrap())
        .filter(|a| a["subtype"] == subtype)
        .collect()
}

#[test]
fn only_the_sender_withdraws_a_letter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    let svc = Service::new(store.clone(), "test");
    register(&svc, SENDER, "結び総合病院");
    register(&svc, ADDRESSEE, "むすびクリニック");
    register(&svc, OTHER, "よその病院");
    let out = svc.submit_bundle(&system(SENDER), referral_doc("SW-1")).unwrap();
    let id = out.referral_id.clone().expect("delivered");
    let bundle_id = out.bundle_id.clone().unwrap();
    let dr_send = user("dr-send", Profession::Doctor, SENDER);
    let dr_to = user("dr-to", Profession::Doctor, ADDRESSEE);

    // The addressee may not take it back; another facility is told nothing; a clerk may not.
    let e = svc.withdraw_referral(&dr_to, &id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(e.summary(), "紹介状を取り下げられるのは紹介元の医療機関だけです");
    let e = svc.withdraw_referral(&user("dr-other", Profession::Doctor, OTHER), &id).unwrap_err();
    assert_eq!((e.kind, e.summary()), (ErrorKind::NotFound, format!("紹介状 {id} は見つかりません")));
    let e = svc.withdraw_referral(&user("clerk-send", Profession::Clerk, SENDER), &id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.summary().contains("取り下げられません"), "{}", e.summary());
    let e = svc.withdraw_referral(&dr_send, "no-such-letter").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    // Each refusal is audited as one.
    let refused = audits(&store, "referral-withdraw");
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|a| a["outcome"] != serde_json::to_value(AuditOutcome::Success).unwrap()));
    // Nothing changed.
    assert_eq!(svc.referral_inbox(&dr_to, None, false).unwrap()[0].status, ReferralStatus::Sent);

    // The sender's doctor withdraws it: the document is deleted, the letter withdrawn.
    let w = svc.withdraw_referral(&dr_send, &id).unwrap();
    assert_eq!((w.id.as_str(), w.status, w.status_label), (id.as_str(), ReferralStatus::Withdrawn, "取り下げ"));
    assert_eq!(w.withdrawn_by.as_deref(), Some("dr-send"));
    assert!(w.deleted_at.is_some() && w.patient.is_none() && w.received_at.is_none());
    let doc = store.current(ResourceType::Bundle, &bundle_id).unwrap().unwrap();
    assert!(doc.deleted, "the document is deleted");
    assert!(store.read(|r| r.bundle_submission(&format!("{SENDER}^2024^SW-1"))).unwrap().is_none());
    let done: Vec<Value> = audits(&store, "referral-withdraw")
        .into_iter()
        .filter(|a| a["outcome"] == serde_json::to_value(AuditOutcome::Success).unwrap())
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["agent"]["name"], "dr-send");
    assert_eq!(done[0]["action"], serde_json::to_value(musubi_domain::audit::AuditAction::Delete).unwrap());
    assert_eq!(done[0]["entities"], json!([format!("Bundle/{bundle_id}")]));
    assert_eq!(audits(&store, "delete-bundle").len(), 1);

    // The inbox shows it withdrawn; opening it says so; withdrawing again answers 410.
    let inbox = svc.referral_inbox(&dr_to, None, false).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!((inbox[0].status, inbox[0].deleted_reason.as_deref()), (ReferralStatus::Withdrawn, Some("withdrawn")));
    let e = svc.open_referral(&dr_to, &id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Gone);
    assert!(e.summary().starts_with("この紹介状は紹介元（結び総合病院 1318814790）が 20"), "{}", e.summary());
    assert!(e.summary().contains("に取り下げました"), "{}", e.summary());
    let e = svc.withdraw_referral(&dr_send, &id).unwrap_err();
    assert_eq!((e.kind, e.summary()), (ErrorKind::Gone, "この紹介状はすでに取り下げられています".to_owned()));

    // The retention sweep, long after, leaves the withdrawal as it was.
    let far = musubi_fhir::datetime::now_ms() + 400 * 86_400_000;
    svc.retention_sweep(&Ctx::operator("sweep"), far).unwrap();
    let x = svc.referral_outbox(&dr_send, None, false).unwrap();
    assert_eq!((x.len(), x[0].status, x[0].withdrawn_by.as_deref()), (1, ReferralStatus::Withdrawn, Some("dr-send")));
}
