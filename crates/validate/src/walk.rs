//! The structural walk: one pass over the JSON tree, following the compiled profile nodes, that
//! checks element names, JSON shapes, cardinalities, primitive formats, fixed/pattern values
//! and slices, recursing into `contained` resources and Bundle entries. Rules beyond structure
//! are called from here ([`crate::invariants`], [`crate::codes`]).

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::datatypes;
use crate::primitives::{self, Primitive, PrimitiveError};
use crate::profiles::{Fixed, Kind, Matcher, NodeId, Schema, Slicing, TypeRef, name_prefix};
use crate::report::{Report, claimed_profiles, short};
use crate::{Issue, Severity};

/// Deeper JSON than this is rejected rather than walked (no FHIR resource needs it).
const MAX_DEPTH: u32 = 64;

/// The state of one validation run.
pub(crate) struct Walker<'s> {
    pub schema: &'s Schema,
    /// Where issues go, with the path being walked.
    pub report: Report,
    depth: u32,
    /// Name of the profile being applied (for rule ids).
    profile: &'s str,
}

/// What a JSON key names in a node.
enum Lookup<'s> {
    /// An element (and its position among the node's children), with the type chosen by an
    /// `[x]` suffix and the type slice node if any.
    Found(NodeId, u32, Option<&'s TypeRef>, Option<NodeId>),
    /// A choice element with a type it does not allow.
    BadType(NodeId),
    /// No such element.
    Unknown,
}

/// Which slice an item belongs to.
enum SliceMatch {
    Slice(usize),
    Ambiguous,
    None,
}

impl<'s> Walker<'s> {
    pub fn new(schema: &'s Schema) -> Walker<'s> {
        Walker { schema, report: Report::default(), depth: 0, profile: "FHIR R4" }
    }

    /// The issues, without duplicates (a resource claiming two profiles is walked twice).
    pub fn finish(self) -> Vec<Issue> {
        self.report.finish()
    }

    /// Records an issue at the current path (plus `rel`, a relative FHIRPath, if not empty).
    pub fn issue(&mut self, severity: Severity, code: &'static str, rel: &str, rule: Option<String>, message: String) {
        self.report.issue(severity, code, rel, rule, message);
    }

    fn rule(&self, what: &str) -> Option<String> {
        Some(format!("{}: {}", self.profile, what))
    }

    /// Validates the top-level value of a submission expected to be a Bundle.
    pub fn submission_bundle(&mut self, bundle: &Value) {
        self.report.submission = true;
        let rt = bundle.get("resourceType").and_then(Value::as_str);
        if rt != Some("Bundle") {
            self.report.path.push_str("Bundle");
            self.issue(
                Severity::Error,
                "structure",
                "",
                Some("JP-CLINS: Bundle".into()),
                format!(
                    "送信単位は Bundle リソースでなければなりません (resourceType が {} です)",
                    rt.map_or_else(|| "ありません".to_owned(), |t| format!("「{t}」"))
                ),
            );
            self.report.path.clear();
        }
        // A document Bundle that names no submission profile is checked against the one its
        // Composition type implies, with a warning.
        let claims_one = bundle
            .as_object()
            .is_some_and(|o| claimed_profiles(o).iter().any(|u| crate::invariants::is_submission_profile(u)));
        let inferred = (!claims_one && bundle.get("type").and_then(Value::as_str) == Some("document"))
            .then(|| {
                let composition = bundle.get("entry")?.get(0)?.get("resource")?;
                let codings = composition.get("type")?.get("coding")?.as_array()?;
                codings.iter().find_map(|c| {
                    c.get("code").and_then(Value::as_str).and_then(crate::invariants::document_profile_for_type)
                })
            })
            .flatten();
        match inferred {
            Some(url) => {
                let mut copy = bundle.clone();
                if let Some(o) = copy.as_object_mut() {
                    let meta = o.entry("meta").or_insert_with(|| Value::Object(Map::new()));
                    if let Some(m) = meta.as_object_mut() {
                        m.insert("profile".into(), Value::Array(vec![Value::String(url.into())]));
                    }
                }
                self.report.path.push_str("Bundle");
                self.issue(
                    Severity::Warning,
                    "business-rule",
                    "meta.profile",
                    Some("JP-CLINS: Bundle profile".into()),
                    format!("文書 Bundle の meta.profile に {url} を指定してください (Composition の文書種別から判断して検証しました)"),
                );
                self.report.path.clear();
                self.resource(&copy, &[]);
            }
            None => self.resource(bundle, &[]),
        }
    }

    /// Validates a resource at the current path (empty for a top-level resource).
    /// `hint` lists profiles the context expects (a slice's or an entry's type profile), used when
    /// the resource names none it knows.
    pub fn resource(&mut self, value: &Value, hint: &[Box<str>]) {
        let top = self.report.path.is_empty();
        let Value::Object(obj) = value else {
            if top {
                self.report.path.push_str("Resource");
            }
            self.issue(
                Severity::Error,
                "structure",
                "",
                None,
                "リソースは JSON オブジェクトでなければなりません".into(),
            );
            return;
        };
        let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
            if top {
                self.report.path.push_str("Resource");
            }
            self.issue(
                Severity::Error,
                "required",
                "",
                None,
                "resourceType がありません。リソースの種類 (\"Patient\" など) を文字列で指定してください".into(),
            );
            return;
        };
        if !datatypes::is_resource_type(rt) {
            if top {
                self.report.path.push_str("Resource");
            }
            self.issue(
                Severity::Error,
                "not-supported",
                "",
                None,
                format!("resourceType「{rt}」は FHIR R4 のリソース種別ではありません (大文字・小文字も区別されます)"),
            );
            return;
        }
        if top {
            self.report.path.push_str(rt);
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.issue(Severity::Error, "structure", "", None, "リソースの入れ子が深すぎます".into());
            self.depth -= 1;
            return;
        }
        let claimed = claimed_profiles(obj);
        let schema = self.schema;
        let mut roots = Vec::new();
        for url in &claimed {
            match schema.profile(url) {
                Some(p) if p.type_name.as_ref() == rt => roots.push(p),
                Some(p) => self.issue(
                    Severity::Error,
                    "invalid",
                    "meta.profile",
                    None,
                    format!("プロファイル {url} は {} 用であり、{rt} には使えません", p.type_name),
                ),
                None => self.issue(
                    Severity::Warning,
                    "not-supported",
                    "meta.profile",
                    None,
                    format!(
                        "プロファイル {url} は Musubi が知らないプロファイルです。{rt} の JP Core 基本プロファイル (なければ FHIR R4 の構造) で検証しました"
                    ),
                ),
            }
        }
        if roots.is_empty() {
            let hinted = hint.iter().find_map(|u| schema.profile(u)).filter(|p| p.type_name.as_ref() == rt);
            if let Some(p) = hinted.or_else(|| schema.base_profile(rt)) {
                roots.push(p);
            }
        }
        let saved_checkup = self.report.in_checkup;
        if rt == "Bundle"
            && claimed.iter().any(|u| u.starts_with("http://jpfhir.jp/fhir/eCheckup/") || u.contains("eCheckupGeneral"))
        {
            self.report.in_checkup = true;
        }
        let saved = self.profile;
        if roots.is_empty() {
            self.profile = "FHIR R4";
            self.walk_object(obj, schema.generic_resource, true);
        }
        for p in roots {
            self.profile = &p.name;
            self.walk_object(obj, p.root, true);
        }
        self.profile = saved;
        crate::invariants::resource(&mut self.report, rt, obj, &claimed);
        self.report.in_checkup = saved_checkup;
        self.depth -= 1;
    }

    /// Walks the members of a JSON object against a node's children.
    fn walk_object(&mut self, obj: &Map<String, Value>, ctx: NodeId, resource_root: bool) {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.issue(Severity::Error, "structure", "", None, "JSON の入れ子が深すぎます".into());
            self.depth -= 1;
            return;
        }
        let schema = self.schema;
        let node = schema.node(ctx);
        let any_companion = obj.keys().any(|k| k.starts_with('_'));
        // Children seen, by position (for the required check without hashing again).
        let mut seen: u128 = 0;
        for (key, val) in obj {
            if resource_root && key == "resourceType" {
                continue;
            }
            let (name, companion_only) = match key.strip_prefix('_') {
                Some(n) => {
                    if obj.contains_key(n) {
                        continue; // walked together with its value
                    }
                    (n, true)
                }
                None => (key.as_str(), false),
            };
            match self.lookup(ctx, name) {
                Lookup::Found(child, pos, ty, type_slice) => {
                    if pos < 128 {
                        seen |= 1 << pos;
                    }
                    let companion = if companion_only {
                        Some(val)
                    } else if any_companion {
                        obj.get(&format!("_{name}"))
                    } else {
                        None
                    };
                    let value = if companion_only { None } else { Some(val) };
                    self.element(child, ty, type_slice, key, value, companion);
                }
                Lookup::BadType(child) => {
                    let c = schema.node(child);
                    let allowed: Vec<&str> = c.types.iter().map(|t| t.code.as_ref()).collect();
                    let base = c.name.clone();
                    let rule = self.rule(&format!("{} type", c.path));
                    self.issue(
                        Severity::Error,
                        "structure",
                        &base,
                        rule,
                        format!("{key} の型はここでは使えません。{base}[x] に使える型は {} です", allowed.join(", ")),
                    );
                }
                Lookup::Unknown if node.open => {}
                Lookup::Unknown => {
                    let rule = self.rule(&format!("{} unknown element", node.path));
                    self.issue(
                        Severity::Error,
                        "structure",
                        name,
                        rule,
                        format!(
                            "「{key}」は {} に定義されていない要素です。要素名の綴り・大文字小文字と、選択型 ([x]) の型名を確認してください",
                            if node.path.is_empty() { "このリソース" } else { &node.path }
                        ),
                    );
                }
            }
        }
        for &(r, pos) in &node.required {
            if pos < 128 && seen & (1 << pos) != 0 {
                continue;
            }
            self.check_required(obj, r);
        }
        self.depth -= 1;
    }

    fn lookup(&self, ctx: NodeId, key: &str) -> Lookup<'s> {
        let schema = self.schema;
        let node = schema.node(ctx);
        let kp = name_prefix(key);
        // Names of up to 8 bytes are decided by the packed prefix and the length alone.
        let short = key.len() <= 8;
        let found = node.child_keys.binary_search_by(|(p, c)| {
            p.cmp(&kp).then_with(|| {
                let name = schema.node(*c).name.as_ref();
                if short && name.len() <= 8 { name.len().cmp(&key.len()) } else { name.cmp(key) }
            })
        });
        if let Ok(i) = found {
            let id = node.child_keys[i].1;
            if !schema.node(id).choice {
                return Lookup::Found(id, i as u32, None, None);
            }
        }
        for &(c, pos) in &node.choices {
            let cn = schema.node(c);
            let Some(suffix) = key.strip_prefix(cn.name.as_ref()) else { continue };
            if !suffix.starts_with(|ch: char| ch.is_ascii_uppercase()) {
                continue;
            }
            let type_slice = cn.type_slices.iter().find(|(n, _)| n.as_ref() == key).map(|(_, id)| *id);
            if cn.types.is_empty() {
                return match schema.type_for_suffix(suffix) {
                    Some(t) => Lookup::Found(c, pos, Some(t), type_slice),
                    None => Lookup::BadType(c),
                };
            }
            let found = cn.types.iter().find(|t| eq_type_suffix(&t.code, suffix));
            return match found {
                Some(t) => Lookup::Found(c, pos, Some(t), type_slice),
                None => Lookup::BadType(c),
            };
        }
        Lookup::Unknown
    }

    fn check_required(&mut self, obj: &Map<String, Value>, r: NodeId) {
        let schema = self.schema;
        let rn = schema.node(r);
        let name = rn.name.as_ref();
        let present = if rn.choice {
            obj.keys().any(|k| {
                let k = k.strip_prefix('_').unwrap_or(k);
                k.strip_prefix(name).is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
            })
        } else {
            obj.contains_key(name) || obj.keys().any(|k| k.strip_prefix('_') == Some(name))
        };
        if present {
            return;
        }
        let label = if rn.choice { format!("{name}[x]") } else { name.to_owned() };
        if rn.min > 0 {
            let rule = self.rule(&format!("{} min={}", rn.path, rn.min));
            self.issue(
                Severity::Error,
                "required",
                name,
                rule,
                format!("必須要素 {label} がありません ({} は {} 個以上必要です)", rn.path, rn.min),
            );
        } else if let Some(sl) = &rn.slicing {
            for s in sl.slices.iter().filter(|s| !s.matchers.is_empty()) {
                let sn = schema.node(s.node);
                if sn.min > 0 {
                    let rule = self.rule(&format!("{}:{} min={}", rn.path, s.name, sn.min));
                    self.issue(
                        Severity::Error,
                        "required",
                        name,
                        rule,
                        format!("{label} にスライス「{}」の要素が {} 個以上必要です", s.name, sn.min),
                    );
                }
            }
        }
    }

    /// Walks one element (its value and/or `_` companion).
    fn element(
        &mut self,
        child: NodeId,
        ty: Option<&'s TypeRef>,
        type_slice: Option<NodeId>,
        key: &str,
        value: Option<&Value>,
        companion: Option<&Value>,
    ) {
        let schema = self.schema;
        let n = schema.node(child);
        let mark = self.report.path.len();
        if !self.report.path.is_empty() {
            self.report.path.push('.');
        }
        self.report.path.push_str(&n.name);
        if n.max == Some(0) {
            let rule = self.rule(&format!("{} max=0", n.path));
            self.issue(
                Severity::Error,
                "structure",
                "",
                rule,
                format!("{key} はこのプロファイル ({}) では使用できません (max=0)", self.profile),
            );
        }
        let ty = ty.or_else(|| n.types.first());
        match value {
            Some(v) => {
                if n.array {
                    self.array(child, ty, type_slice, key, v, companion);
                } else {
                    if v.is_array() {
                        let rule = self.rule(&format!("{} max=1", n.path));
                        self.issue(
                            Severity::Error,
                            "structure",
                            "",
                            rule,
                            format!("{key} は単一の値です。配列 [...] ではなく値そのものを書いてください"),
                        );
                    } else {
                        self.item(child, ty, type_slice, v, false);
                    }
                    if let Some(c) = companion {
                        self.companion(c, false);
                    }
                }
            }
            None => {
                if let Some(c) = companion {
                    self.companion(c, n.array);
                }
            }
        }
        self.report.path.truncate(mark);
    }

    fn array(
        &mut self,
        child: NodeId,
        ty: Option<&TypeRef>,
        type_slice: Option<NodeId>,
        key: &str,
        v: &Value,
        companion: Option<&Value>,
    ) {
        let schema = self.schema;
        let n = schema.node(child);
        let Value::Array(items) = v else {
            let rule = self.rule(&format!("{} max={}", n.path, n.max.map_or("*".to_owned(), |m| m.to_string())));
            self.issue(
                Severity::Error,
                "structure",
                "",
                rule,
                format!("{key} は繰り返し要素です。値が 1 つでも配列 [...] で書いてください"),
            );
            return;
        };
        if items.is_empty() {
            self.issue(
                Severity::Error,
                "structure",
                "",
                None,
                format!("{key} が空の配列です。値がなければ要素ごと省略してください"),
            );
            return;
        }
        if let Some(max) = n.max
            && items.len() > max as usize
        {
            let rule = self.rule(&format!("{} max={max}", n.path));
            self.issue(
                Severity::Error,
                "structure",
                "",
                rule,
                format!("{key} は {max} 個までですが {} 個あります", items.len()),
            );
        }
        if (items.len() as u32) < n.min {
            let rule = self.rule(&format!("{} min={}", n.path, n.min));
            self.issue(
                Severity::Error,
                "required",
                "",
                rule,
                format!("{key} は {} 個以上必要ですが {} 個です", n.min, items.len()),
            );
        }
        let companions = companion.and_then(Value::as_array);
        let slicing = n.slicing.as_deref();
        let mut counts = vec![0u32; slicing.map_or(0, |s| s.slices.len())];
        for (i, item) in items.iter().enumerate() {
            let mark = self.report.path.len();
            let _ = write!(self.report.path, "[{i}]");
            let mut slice_node = type_slice;
            if let Some(sl) = slicing {
                match self.match_slice(sl, item) {
                    SliceMatch::Slice(s) => {
                        counts[s] += 1;
                        slice_node = Some(sl.slices[s].node);
                    }
                    SliceMatch::None if sl.closed && sl.all_resolved => {
                        let names: Vec<&str> = sl.slices.iter().map(|s| s.name.as_ref()).collect();
                        let rule = self.rule(&format!("{} slicing closed", n.path));
                        self.issue(
                            Severity::Error,
                            "structure",
                            "",
                            rule,
                            format!(
                                "{key} の要素がプロファイルの定めるどのスライス ({}) にも一致しません",
                                names.join(", ")
                            ),
                        );
                    }
                    _ => {}
                }
            }
            let has_companion = companions.and_then(|c| c.get(i)).is_some_and(|c| !c.is_null());
            if !(item.is_null() && has_companion) {
                self.item(child, ty, slice_node, item, true);
            }
            self.report.path.truncate(mark);
        }
        if let Some(c) = companion {
            self.companion(c, true);
        }
        if let Some(sl) = slicing {
            for (s, count) in sl.slices.iter().zip(counts) {
                if s.matchers.is_empty() {
                    continue;
                }
                let sn = schema.node(s.node);
                if count < sn.min {
                    let rule = self.rule(&format!("{}:{} min={}", n.path, s.name, sn.min));
                    self.issue(
                        Severity::Error,
                        "required",
                        "",
                        rule,
                        format!("{key} にスライス「{}」の要素が {} 個以上必要ですが {count} 個です", s.name, sn.min),
                    );
                }
                if let Some(max) = sn.max
                    && count > max
                {
                    let rule = self.rule(&format!("{}:{} max={max}", n.path, s.name));
                    self.issue(
                        Severity::Error,
                        "structure",
                        "",
                        rule,
                        format!("{key} のスライス「{}」は {max} 個までですが {count} 個あります", s.name),
                    );
                }
            }
        }
    }

    /// Walks one value of an element.
    fn item(&mut self, child: NodeId, ty: Option<&TypeRef>, slice: Option<NodeId>, v: &Value, in_array: bool) {
        let schema = self.schema;
        let n = schema.node(child);
        let Some(ty) = ty else {
            return; // a choice of any type with no suffix cannot happen; nothing to check
        };
        match &ty.kind {
            Kind::Primitive(p) => {
                if v.is_null() {
                    self.issue(
                        Severity::Error,
                        "structure",
                        "",
                        None,
                        if in_array {
                            "null は、同じ位置に _要素 (拡張) がある場合にだけ使えます".into()
                        } else {
                            "値が null です。値がなければ要素ごと省略してください".into()
                        },
                    );
                    return;
                }
                if let Err(e) = primitives::check(*p, v) {
                    let rule = self.rule(&format!("{} type={}", n.path, p.name()));
                    let (code, msg) = match e {
                        PrimitiveError::JsonType(want) => (
                            "structure",
                            format!("{} 型の値は {want} で書いてください (実際は {})", p.name(), json_kind(v)),
                        ),
                        PrimitiveError::Format(why) => {
                            ("value", format!("{} 型の値「{}」が不正です: {why}", p.name(), short(v)))
                        }
                    };
                    self.issue(Severity::Error, code, "", rule, msg);
                    return;
                }
                if *p == Primitive::Xhtml {
                    return;
                }
            }
            Kind::Resource => {
                let hint =
                    slice.and_then(|s| schema.node(s).types.first()).filter(|t| t.kind == Kind::Resource).unwrap_or(ty);
                self.resource(v, &hint.profiles);
                return;
            }
            Kind::Complex | Kind::Backbone => {
                let Value::Object(obj) = v else {
                    let rule = self.rule(&format!("{} type={}", n.path, ty.code));
                    self.issue(
                        Severity::Error,
                        "structure",
                        "",
                        rule,
                        format!(
                            "{} 型の要素は JSON オブジェクト {{...}} で書いてください (実際は {})",
                            ty.code,
                            json_kind(v)
                        ),
                    );
                    return;
                };
                if obj.is_empty() {
                    self.issue(
                        Severity::Error,
                        "structure",
                        "",
                        Some("ele-1".into()),
                        "空のオブジェクトは使えません。値か子要素を持たせるか、要素ごと省略してください".into(),
                    );
                    return;
                }
                let content = slice
                    .and_then(|s| schema.node(s).content)
                    .or(if n.choice { None } else { n.content })
                    .or_else(|| schema.datatype(&ty.code));
                if let Some(c) = content {
                    self.walk_object(obj, c, false);
                }
                match ty.code.as_ref() {
                    "Coding" => crate::codes::coding(&mut self.report, obj),
                    "Extension" => self.extension_shape(obj),
                    _ => {}
                }
            }
        }
        for f in [slice.and_then(|s| schema.node(s).fixed.as_ref()), n.fixed.as_ref()].into_iter().flatten() {
            if !fixed_matches(f, v) {
                if let (Value::String(got), Value::String(want)) = (v, &f.value)
                    && crate::terminology::oid_alias(want) == Some(got.as_str())
                {
                    let rule = self.rule(&format!("{} fixed", n.path));
                    self.issue(
                        Severity::Warning,
                        "value",
                        "",
                        rule,
                        format!("「{got}」は {want} の OID 形式です。JP-CLINS では URI 形式の {want} を使ってください"),
                    );
                    break;
                }
                let rule = self.rule(&format!("{} {}", n.path, if f.pattern { "pattern" } else { "fixed" }));
                self.issue(
                    Severity::Error,
                    "value",
                    "",
                    rule,
                    format!(
                        "値「{}」はプロファイルが{}値 {} と一致しません",
                        short(v),
                        if f.pattern { "求める" } else { "固定する" },
                        short(&f.value)
                    ),
                );
                break;
            }
        }
    }

    /// ext-1 and the URL of an extension.
    fn extension_shape(&mut self, obj: &Map<String, Value>) {
        let has_value = obj.keys().any(|k| k.starts_with("value") && k.len() > 5);
        let has_ext = obj.contains_key("extension");
        if has_value == has_ext {
            self.issue(
                Severity::Error,
                "invariant",
                "",
                Some("ext-1".into()),
                if has_value {
                    "拡張は value[x] か入れ子の extension のどちらか一方だけを持ちます".into()
                } else {
                    "拡張に value[x] (または入れ子の extension) がありません".into()
                },
            );
        }
    }

    /// `_element` companions: `{id, extension}` objects (or arrays of them, with nulls).
    fn companion(&mut self, c: &Value, array: bool) {
        let schema = self.schema;
        let Some(element) = schema.datatype("Element") else { return };
        let mark = self.report.path.len();
        match (array, c) {
            (true, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Null => {}
                        Value::Object(o) => {
                            let m = self.report.path.len();
                            let _ = write!(self.report.path, "[{i}]");
                            self.walk_object(o, element, false);
                            self.report.path.truncate(m);
                        }
                        _ => self.issue(
                            Severity::Error,
                            "structure",
                            "",
                            None,
                            "_要素の各値は {...} か null です".into(),
                        ),
                    }
                }
            }
            (false, Value::Object(o)) => self.walk_object(o, element, false),
            _ => self.issue(
                Severity::Error,
                "structure",
                "",
                None,
                "_要素 (プリミティブの拡張) の形が値と一致しません".into(),
            ),
        }
        self.report.path.truncate(mark);
    }

    fn match_slice(&self, sl: &Slicing, item: &Value) -> SliceMatch {
        if let Some(Matcher::Resource { .. }) = sl.slices.iter().find_map(|s| s.matchers.first()) {
            return self.match_resource_slice(sl, item);
        }
        let all: Vec<usize>;
        let candidates: &[usize] = match &sl.index_path {
            Some(p) => match item.get(p.as_ref()).and_then(Value::as_str).and_then(|v| sl.index.get(v)) {
                Some(list) => list,
                None => return SliceMatch::None,
            },
            None => {
                all = (0..sl.slices.len()).collect();
                &all
            }
        };
        for &i in candidates {
            let s = &sl.slices[i];
            if !s.matchers.is_empty() && s.matchers.iter().all(|m| value_matcher_ok(m, item)) {
                return SliceMatch::Slice(i);
            }
        }
        SliceMatch::None
    }

    fn match_resource_slice(&self, sl: &Slicing, item: &Value) -> SliceMatch {
        let mut typed = Vec::new();
        for (i, s) in sl.slices.iter().enumerate() {
            if let Some(Matcher::Resource { path, type_name, profiles }) = s.matchers.first() {
                let res = match path {
                    Some(p) => item.get(p.as_ref()),
                    None => Some(item),
                };
                let Some(res) = res else { continue };
                let rt = res.get("resourceType").and_then(Value::as_str);
                if rt == Some(type_name.as_ref()) || type_name.as_ref() == "Resource" {
                    typed.push((i, res, profiles));
                }
            }
        }
        match typed.len() {
            0 => SliceMatch::None,
            1 => SliceMatch::Slice(typed[0].0),
            _ => {
                for (i, res, profiles) in &typed {
                    let claimed = res.get("meta").and_then(|m| m.get("profile")).and_then(Value::as_array);
                    let claims = claimed.is_some_and(|c| {
                        c.iter().filter_map(Value::as_str).any(|u| {
                            let u = u.split('|').next().unwrap_or(u);
                            profiles.iter().any(|p| p.as_ref() == u)
                        })
                    });
                    if claims {
                        return SliceMatch::Slice(*i);
                    }
                }
                SliceMatch::Ambiguous
            }
        }
    }
}

/// `Quantity` matches suffix `Quantity`; `dateTime` matches `DateTime`.
fn eq_type_suffix(code: &str, suffix: &str) -> bool {
    let mut a = code.chars();
    let mut b = suffix.chars();
    match (a.next(), b.next()) {
        (Some(x), Some(y)) if x.to_ascii_uppercase() == y => a.as_str() == b.as_str(),
        _ => false,
    }
}

fn value_matcher_ok(m: &Matcher, item: &Value) -> bool {
    match m {
        Matcher::Value { path, fixed } => any_at_path(item, path, &|v| fixed_matches(fixed, v)),
        Matcher::Resource { .. } => false,
    }
}

/// Whether some value reached by following `path` (through arrays) satisfies `f`.
fn any_at_path(v: &Value, path: &[Box<str>], f: &dyn Fn(&Value) -> bool) -> bool {
    any_at_path_depth(v, path, f, 0)
}

fn any_at_path_depth(v: &Value, path: &[Box<str>], f: &dyn Fn(&Value) -> bool, depth: u32) -> bool {
    if depth > MAX_DEPTH {
        return false; // arrays nested this deep are rejected by the walk anyway
    }
    match v {
        Value::Array(items) => items.iter().any(|i| any_at_path_depth(i, path, f, depth + 1)),
        _ => match path.split_first() {
            None => f(v),
            Some((head, rest)) => v.get(head.as_ref()).is_some_and(|c| any_at_path_depth(c, rest, f, depth + 1)),
        },
    }
}

/// fixed[x]: equal; pattern[x]: every member of the pattern is present in the value.
pub(crate) fn fixed_matches(f: &Fixed, v: &Value) -> bool {
    if f.pattern { pattern_matches(&f.value, v) } else { json_eq(&f.value, v) }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

fn pattern_matches(pattern: &Value, v: &Value) -> bool {
    match (pattern, v) {
        (Value::Object(p), Value::Object(o)) => {
            p.iter().all(|(k, pv)| o.get(k).is_some_and(|ov| pattern_matches(pv, ov)))
        }
        (Value::Array(p), Value::Array(o)) => p.iter().all(|pv| o.iter().any(|ov| pattern_matches(pv, ov))),
        (Value::Array(p), single) => p.iter().all(|pv| pattern_matches(pv, single)),
        _ => json_eq(pattern, v),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "真偽値",
        Value::Number(_) => "数値",
        Value::String(_) => "文字列",
        Value::Array(_) => "配列",
        Value::Object(_) => "オブジェクト",
    }
}
