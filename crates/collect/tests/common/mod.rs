//! Shared test helpers: stores on both backends, snapshots for "nothing changed" checks, the
//! operator's context, copying reference trees.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use musubi_gate::Actor;
use musubi_service::{Ctx, Service};
use musubi_store::collect::{QuarantineEntry, QuarantineQuery, SourceKind};
use musubi_store::{Scope, Store};
use serde_json::Value;

pub const SAMPLES: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData");

pub fn operator() -> Ctx {
    Ctx { actor: Actor::Operator { name: "test".into() }, address: None, base_url: String::new() }
}

/// A fresh PostgreSQL database on the server named by `MUSUBI_TEST_POSTGRES`, dropped at the end.
pub struct FreshPg {
    admin: String,
    name: String,
    pub url: String,
}

impl FreshPg {
    pub fn new() -> FreshPg {
        let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect(
            "MUSUBI_TEST_POSTGRES is not set: the collector tests also run on PostgreSQL. Run scripts/test, which starts a server and sets it.",
        );
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("musubi_collect_{}_{}", std::process::id(), t % 1_000_000_000_000);
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to MUSUBI_TEST_POSTGRES");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        FreshPg { admin, name, url }
    }
}

impl Drop for FreshPg {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// Every file under a directory, relative, sorted.
pub fn files(root: &Path) -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    let mut rel: Vec<String> = out.iter().map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_owned()).collect();
    rel.sort();
    rel
}

/// The current content of a resource, parsed.
pub fn current(store: &Store, rtype: &str, id: &str) -> Option<Value> {
    // A type Musubi does not serve is never stored.
    let rt = rtype.parse().ok()?;
    let cur = store.current(rt, id).unwrap()?;
    if cur.deleted {
        return None;
    }
    let v = store.read(|r| r.version(rt, id, None)).unwrap()?;
    Some(serde_json::from_str(v.content.as_deref()?).unwrap())
}

/// Everything the collector writes, without write times: every resource version (type, id,
/// version, deleted, content without `meta.lastUpdated`), the file states, the quarantine,
/// the source links and the audit entities.
pub fn snapshot(store: &Store) -> Value {
    let (_, versions) = store.read(|r| r.history(None, None, None, &Scope::all(), 0, 10_000_000)).unwrap();
    let mut vs: Vec<Value> = versions
        .into_iter()
        .map(|(v, cur)| {
            let mut content: Value = v.content.as_deref().map_or(Value::Null, |c| serde_json::from_str(c).unwrap());
            if let Some(m) = content.get_mut("meta").and_then(Value::as_object_mut) {
                m.remove("lastUpdated");
            }
            let link = store.read(|r| r.source_link(cur.rtype, &cur.id)).unwrap();
            serde_json::json!([
                cur.rtype.as_str(),
                v.id,
                v.version,
                v.deleted,
                content,
                cur.version,
                link.map(|l| (l.source_key, l.path, l.file_sha256))
            ])
        })
        .collect();
    vs.sort_by_key(|v| v.to_string());
    let mut files = Vec::new();
    for kind in [SourceKind::Ssmix2, SourceKind::Uke] {
        for f in store.read(|r| r.collect_files(None, kind)).unwrap() {
            files.push(serde_json::json!([
                f.facility,
                kind.as_str(),
                f.path,
                f.size,
                f.sha256,
                f.outcome.as_str(),
                f.resources,
                f.quarantined
            ]));
        }
    }
    let q: Vec<Value> = store
        .read(|r| r.quarantine(&QuarantineQuery { include_resolved: true, ..Default::default() }))
        .unwrap()
        .into_iter()
        .map(|e| {
            serde_json::json!([
                e.facility,
                e.path,
                e.file_sha256,
                e.seq,
                e.unit,
                e.line,
                e.segment,
                e.field,
                e.element,
                e.rule,
                e.reason,
                e.content,
                e.resolved_at.is_some()
            ])
        })
        .collect();
    let mut entities: Vec<String> = Vec::new();
    let (seq, _) = store.audit_head().unwrap();
    let page = store.read(|r| r.audit_page(0, seq + 1)).unwrap();
    for a in page {
        let rec: Value = serde_json::from_str(&a.record).unwrap();
        if rec["subtype"] == "collect" {
            for e in rec["entities"].as_array().unwrap() {
                entities.push(e.as_str().unwrap().to_owned());
            }
        }
    }
    entities.sort();
    serde_json::json!({"versions": vs, "files": files, "quarantine": q, "audit_entities": entities})
}

/// The open quarantine as the operator sees it.
pub fn open_quarantine(service: &Service) -> Vec<QuarantineEntry> {
    service.collect_quarantine(&operator(), QuarantineQuery::default()).unwrap()
}
