//! The compiled form of the profiles: every StructureDefinition snapshot and every hand-written
//! datatype becomes a tree of [`Node`]s in one arena, built once at first use. Walking a
//! resource is then a matter of binary searches over sorted child lists.

use std::collections::HashMap;

use serde_json::Value;

use crate::datatypes;
use crate::package::{self, ElementDefinition, PackageError, StructureDefinition};
use crate::primitives::Primitive;

/// Index of a node in [`Schema::nodes`].
pub(crate) type NodeId = u32;

/// What kind of value an element holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A primitive (JSON string, number or boolean).
    Primitive(Primitive),
    /// A complex datatype described in [`datatypes::TABLE`] (or an opaque one).
    Complex,
    /// A resource (`contained`, `Bundle.entry.resource`); the code names the type or `Resource`.
    Resource,
    /// A BackboneElement/Element whose children are in the snapshot.
    Backbone,
}

/// One allowed type of an element.
#[derive(Debug, Clone)]
pub(crate) struct TypeRef {
    /// The type code (`string`, `Coding`, `Patient`, …).
    pub code: Box<str>,
    /// What kind of value it is.
    pub kind: Kind,
    /// Profiles on the type (used for extension slice URLs and resource slices).
    pub profiles: Vec<Box<str>>,
}

/// A fixed[x] or pattern[x] constraint.
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    /// `pattern[x]` (subset match) rather than `fixed[x]` (exact).
    pub pattern: bool,
    /// The value.
    pub value: Value,
}

/// One way a slice recognizes its members: the value at `path` must match.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// The value at a relative path equals (or, for patterns, contains) a value.
    Value { path: Vec<Box<str>>, fixed: Fixed },
    /// A resource (or entry's resource) of this type; profiles break ties between slices.
    Resource { path: Option<Box<str>>, type_name: Box<str>, profiles: Vec<Box<str>> },
}

/// One slice of a sliced element.
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    /// The slice name.
    pub name: Box<str>,
    /// The slice's own node (its cardinality and children).
    pub node: NodeId,
    /// How members are recognized; empty when the discriminator could not be resolved, in which
    /// case the slice is never matched and its minimum is not enforced.
    pub matchers: Vec<Matcher>,
}

/// The slicing of an element.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slicing {
    /// `rules = closed`: every member must belong to a slice.
    pub closed: bool,
    /// The slices, in snapshot order.
    pub slices: Vec<Slice>,
    /// Whether every slice could be resolved (closed rules are enforced only then).
    pub all_resolved: bool,
    /// For value slicings whose first matcher is a single-segment string: value → slices.
    pub index: HashMap<String, Vec<usize>>,
    /// The path of the indexed matcher.
    pub index_path: Option<Box<str>>,
}

/// One element of a profile or datatype.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The JSON name (for choice elements, without `[x]`).
    pub name: Box<str>,
    /// The element path in its StructureDefinition (`Patient.identifier`), for messages.
    pub path: Box<str>,
    /// `[x]` element.
    pub choice: bool,
    /// Minimum cardinality in this profile.
    pub min: u32,
    /// Maximum cardinality in this profile (`None` = `*`).
    pub max: Option<u32>,
    /// Whether the JSON form is an array (base max is not 1).
    pub array: bool,
    /// Allowed types; empty means any (read from the `[x]` suffix).
    pub types: Vec<TypeRef>,
    /// Children, sorted by name (non-slice elements only).
    pub children: Vec<NodeId>,
    /// The children again, keyed by the first 8 bytes of their name packed big-endian (an
    /// order-preserving prefix), so that lookups compare integers before strings.
    pub child_keys: Vec<(u64, NodeId)>,
    /// Children with min > 0 (or with a slice that has min > 0), with their position in
    /// `children`.
    pub required: Vec<(NodeId, u32)>,
    /// Children that are `[x]` elements, with their position in `children`.
    pub choices: Vec<(NodeId, u32)>,
    /// The node whose children describe this element's content (itself, a contentReference
    /// target or a datatype), when that does not depend on the chosen type.
    pub content: Option<NodeId>,
    /// `#Path` of a contentReference, resolved after compiling.
    pub content_ref: Option<Box<str>>,
    /// fixed[x] / pattern[x].
    pub fixed: Option<Fixed>,
    /// Slicing, if the element is sliced.
    pub slicing: Option<Box<Slicing>>,
    /// Choice type slices (`value[x]:valueQuantity`): JSON name → slice node.
    pub type_slices: Vec<(Box<str>, NodeId)>,
    /// Unknown children are accepted (resources with no profile, opaque datatypes).
    pub open: bool,
}

impl Node {
    fn new(name: &str, path: &str) -> Node {
        Node {
            name: name.into(),
            path: path.into(),
            choice: false,
            min: 0,
            max: None,
            array: false,
            types: Vec::new(),
            children: Vec::new(),
            child_keys: Vec::new(),
            required: Vec::new(),
            choices: Vec::new(),
            content: None,
            content_ref: None,
            fixed: None,
            slicing: None,
            type_slices: Vec::new(),
            open: false,
        }
    }
}

/// A compiled profile.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// Canonical URL (without version).
    pub url: Box<str>,
    /// The StructureDefinition name (`JP_Patient_eCS`), used in rule ids.
    pub name: Box<str>,
    /// The resource type it constrains.
    pub type_name: Box<str>,
    /// Root node.
    pub root: NodeId,
}

/// Every compiled profile and datatype.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    pub nodes: Vec<Node>,
    pub profiles: Vec<Profile>,
    pub by_url: HashMap<Box<str>, usize>,
    /// Resource type → profile used when a resource names no known profile.
    pub base_by_type: HashMap<Box<str>, usize>,
    /// Datatype name → root node.
    pub datatypes: HashMap<Box<str>, NodeId>,
    /// Root for resource types no package profiles.
    pub generic_resource: NodeId,
    /// Every type a `value[x]` of any type may take, keyed by its JSON suffix (`String`,
    /// `DateTime`, `Quantity`, …).
    pub any_types: HashMap<Box<str>, TypeRef>,
    /// Problems met while reading the embedded packages (should be none).
    pub load_errors: Vec<String>,
}

impl Schema {
    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &Node {
        // Ids are only ever produced by `push`, so they are in range.
        &self.nodes[id as usize]
    }

    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    /// The profile with this canonical URL (a `|version` suffix is ignored).
    pub fn profile(&self, url: &str) -> Option<&Profile> {
        let url = url.split('|').next().unwrap_or(url);
        self.by_url.get(url).and_then(|&i| self.profiles.get(i))
    }

    /// The fallback profile for a resource type.
    pub fn base_profile(&self, type_name: &str) -> Option<&Profile> {
        self.base_by_type.get(type_name).and_then(|&i| self.profiles.get(i))
    }

    /// The type named by the suffix of an any-type `[x]` element (`valueDateTime` → dateTime).
    pub fn type_for_suffix(&self, suffix: &str) -> Option<&TypeRef> {
        self.any_types.get(suffix)
    }

    /// The root node of a datatype.
    pub fn datatype(&self, name: &str) -> Option<NodeId> {
        self.datatypes.get(name).copied()
    }

    /// Builds the schema from the embedded packages.
    pub fn load() -> Schema {
        let mut s = Schema::default();
        s.build_datatypes();
        let mut errors: Vec<PackageError> = Vec::new();
        // Later packages win for the same URL: JP Core, then the checkup report, then JP-CLINS.
        let mut sds: Vec<StructureDefinition> = Vec::new();
        for tgz in [package::JP_CORE, package::JP_ECHECKUP, package::JP_CLINS] {
            sds.extend(package::structure_definitions(tgz, &mut errors));
        }
        s.load_errors = errors.iter().map(|e| format!("{}: {}", e.file, e.reason)).collect();
        let mut latest: HashMap<&str, usize> = HashMap::new();
        for (i, sd) in sds.iter().enumerate() {
            if sd.kind == "resource" && sd.snapshot.is_some() {
                latest.insert(sd.url.as_str(), i);
            }
        }
        let mut chosen: Vec<usize> = latest.values().copied().collect();
        chosen.sort_unstable();
        for i in chosen {
            if let Some(sd) = sds.get(i) {
                let root = s.compile(sd, false);
                s.add_profile(sd, root);
            }
        }
        // Fallbacks: JP Core profiles where they exist, otherwise a relaxed copy (base
        // cardinalities, no fixed values or slices) of the smallest profile of that type.
        let mut types: Vec<&str> =
            sds.iter().filter(|sd| sd.kind == "resource").map(|sd| sd.type_name.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        for t in types {
            if let Some(idx) = datatypes::jp_core_base(t).and_then(|u| s.by_url.get(u).copied()) {
                s.base_by_type.insert(t.into(), idx);
                continue;
            }
            let smallest = sds
                .iter()
                .filter(|sd| sd.kind == "resource" && sd.type_name == t)
                .min_by_key(|sd| sd.snapshot.as_ref().map_or(usize::MAX, |x| x.element.len()));
            if let Some(sd) = smallest {
                let root = s.compile(sd, true);
                s.profiles.push(Profile {
                    url: "".into(),
                    name: format!("{t} (FHIR R4)").into(),
                    type_name: t.into(),
                    root,
                });
                s.base_by_type.insert(t.into(), s.profiles.len() - 1);
            }
        }
        s.link();
        s
    }

    fn add_profile(&mut self, sd: &StructureDefinition, root: NodeId) {
        self.profiles.push(Profile {
            url: sd.url.as_str().into(),
            name: sd.name.as_str().into(),
            type_name: sd.type_name.as_str().into(),
            root,
        });
        self.by_url.insert(sd.url.as_str().into(), self.profiles.len() - 1);
    }

    /// Compiles the hand-written datatype table and the generic resource root.
    fn build_datatypes(&mut self) {
        for line in datatypes::TABLE.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some((head, body)) = line.split_once(':') else { continue };
            let backbone = head.contains("(backbone)");
            let name = head.replace("(backbone)", "").trim().to_owned();
            let mut elems = String::from("id 0..1 http://hl7.org/fhirpath/System.String; extension 0..* Extension");
            if backbone {
                elems.push_str("; modifierExtension 0..* Extension");
            }
            if !body.trim().is_empty() {
                elems.push_str("; ");
                elems.push_str(body.trim());
            }
            let root = self.datatype_node(&name, &elems);
            self.datatypes.insert(name.as_str().into(), root);
        }
        if let Some(q) = self.datatype("Quantity") {
            for alias in datatypes::QUANTITY_ALIASES {
                self.datatypes.insert((*alias).into(), q);
            }
        }
        for opaque in datatypes::OPAQUE_TYPES {
            let mut n = Node::new(opaque, opaque);
            n.open = true;
            let id = self.push(n);
            self.datatypes.insert((*opaque).into(), id);
        }
        let root = self.datatype_node("Resource", datatypes::DOMAIN_RESOURCE);
        self.nodes[root as usize].open = true;
        self.generic_resource = root;
        const PRIMITIVES: &[&str] = &[
            "boolean",
            "integer",
            "unsignedInt",
            "positiveInt",
            "decimal",
            "string",
            "code",
            "id",
            "uri",
            "url",
            "canonical",
            "oid",
            "uuid",
            "markdown",
            "base64Binary",
            "date",
            "dateTime",
            "instant",
            "time",
        ];
        for p in PRIMITIVES {
            let mut suffix = p[..1].to_ascii_uppercase();
            suffix.push_str(&p[1..]);
            self.any_types.insert(suffix.into(), type_ref(p, &[]));
        }
        let complex: Vec<Box<str>> = self
            .datatypes
            .keys()
            .filter(|k| k.as_ref() != "Element" && k.as_ref() != "BackboneElement")
            .cloned()
            .collect();
        for c in complex {
            let t = type_ref(&c, &[]);
            self.any_types.insert(c, t);
        }
        let empty = HashMap::new();
        for id in 0..self.nodes.len() {
            self.finish_node(id as NodeId, &empty);
        }
    }

    fn datatype_node(&mut self, name: &str, elems: &str) -> NodeId {
        let root = self.push(Node::new(name, name));
        for spec in elems.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = spec.split_whitespace();
            let (Some(ename), Some(card), Some(tys)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let (min, max) = card.split_once("..").unwrap_or(("0", "1"));
            let choice = ename.ends_with("[x]");
            let bare = ename.trim_end_matches("[x]");
            let mut n = Node::new(bare, &format!("{name}.{ename}"));
            n.choice = choice;
            n.min = min.parse().unwrap_or(0);
            n.max = if max == "*" { None } else { max.parse().ok() };
            n.array = max != "1";
            if tys != "*" {
                n.types = tys.split('|').map(|t| type_ref(t, &[])).collect();
            }
            let id = self.push(n);
            self.nodes[root as usize].children.push(id);
        }
        root
    }

    /// Compiles one snapshot into nodes; returns the root.
    fn compile(&mut self, sd: &StructureDefinition, relaxed: bool) -> NodeId {
        let mut by_id: HashMap<&str, NodeId> = HashMap::new();
        let mut root: Option<NodeId> = None;
        let elements = sd.snapshot.as_ref().map(|s| s.element.as_slice()).unwrap_or(&[]);
        let first = self.nodes.len();
        for ed in elements {
            let Some((parent_id, last)) = ed.id.rsplit_once('.') else {
                let mut n = Node::new("", &ed.path);
                n.min = 0;
                n.max = Some(1);
                let id = self.push(n);
                by_id.insert(ed.id.as_str(), id);
                root = Some(id);
                continue;
            };
            let is_slice = last.contains(':');
            if relaxed && (is_slice || parent_id.contains(':')) {
                continue;
            }
            let node = element_node(ed, relaxed, parent_id.rsplit_once('.').is_none());
            let id = self.push(node);
            by_id.insert(ed.id.as_str(), id);
            if let Some((base_last, slice_name)) = last.split_once(':') {
                let base_id = format!("{parent_id}.{base_last}");
                let Some(&base) = by_id.get(base_id.as_str()) else { continue };
                let base_node = &mut self.nodes[base as usize];
                if base_node.choice && slice_name.starts_with(base_node.name.as_ref()) {
                    base_node.type_slices.push((slice_name.into(), id));
                } else {
                    let slicing = base_node.slicing.get_or_insert_with(Default::default);
                    slicing.slices.push(Slice { name: slice_name.into(), node: id, matchers: Vec::new() });
                }
            } else if let Some(&parent) = by_id.get(parent_id) {
                self.nodes[parent as usize].children.push(id);
            }
        }
        // Slicing rules and matchers, now that every slice's children exist.
        for ed in elements.iter().filter(|e| e.slicing.is_some()) {
            let Some(&id) = by_id.get(ed.id.as_str()) else { continue };
            self.resolve_slicing(id, ed);
        }
        for id in first..self.nodes.len() {
            self.finish_node(id as NodeId, &by_id);
        }
        root.unwrap_or(self.generic_resource)
    }

    fn resolve_slicing(&mut self, id: NodeId, ed: &ElementDefinition) {
        let Some(def) = ed.slicing.as_ref() else { return };
        let Some(mut slicing) = self.nodes[id as usize].slicing.take() else { return };
        slicing.closed = def.rules.as_deref() == Some("closed");
        let mut all = true;
        for slice in slicing.slices.iter_mut() {
            let mut matchers = Vec::new();
            let mut ok = !def.discriminator.is_empty();
            for d in &def.discriminator {
                match (d.kind.as_str(), d.path.as_str()) {
                    // A slice that fixes no value on one of several discriminators is taken to
                    // accept any value there (JP_Observation_LabResult_eCS slices code.coding by
                    // system and display but fixes no display on jlac10LaboCode).
                    ("value" | "pattern", path) => matchers.extend(self.value_matchers(slice.node, path)),
                    ("profile" | "type", path @ ("resource" | "$this")) => {
                        let node =
                            if path == "$this" { Some(slice.node) } else { self.child_by_name(slice.node, "resource") };
                        let t = node.and_then(|n| self.nodes[n as usize].types.first().cloned());
                        match t {
                            Some(t) if t.kind == Kind::Resource => matchers.push(Matcher::Resource {
                                path: (path != "$this").then(|| path.into()),
                                type_name: t.code.clone(),
                                profiles: t.profiles.clone(),
                            }),
                            _ => ok = false,
                        }
                    }
                    _ => ok = false,
                }
            }
            if ok && !matchers.is_empty() {
                slice.matchers = matchers;
            } else {
                all = false;
            }
        }
        slicing.all_resolved = all;
        // Index on the first matcher when it is a single-segment string value in every slice.
        let first_path = slicing.slices.first().and_then(|s| match s.matchers.first() {
            Some(Matcher::Value { path, .. }) if path.len() == 1 => Some(path[0].clone()),
            _ => None,
        });
        if let Some(p) = first_path {
            let mut index: HashMap<String, Vec<usize>> = HashMap::new();
            let mut indexable = true;
            for (i, s) in slicing.slices.iter().enumerate() {
                match s.matchers.first() {
                    None => {} // unresolved: never matched
                    Some(Matcher::Value { path, fixed }) if path.len() == 1 && path[0] == p => match &fixed.value {
                        Value::String(v) => index.entry(v.clone()).or_default().push(i),
                        _ => indexable = false,
                    },
                    _ => indexable = false,
                }
            }
            if indexable {
                slicing.index = index;
                slicing.index_path = Some(p);
            }
        }
        self.nodes[id as usize].slicing = Some(slicing);
    }

    /// The fixed/pattern values that identify a slice along a discriminator path.
    fn value_matchers(&self, slice: NodeId, path: &str) -> Vec<Matcher> {
        let mut out = Vec::new();
        if path == "$this" {
            self.collect_fixed(slice, &mut Vec::new(), &mut out);
            return out;
        }
        let segs: Vec<&str> = path.split('.').collect();
        let mut cur = slice;
        for seg in &segs {
            match self.child_by_name(cur, seg) {
                Some(c) => cur = c,
                None => {
                    // Extension slices whose snapshot has no children: the URL is the profile.
                    if segs == ["url"] {
                        let url = self.nodes[slice as usize].types.iter().find_map(|t| t.profiles.first().cloned());
                        if let Some(u) = url {
                            out.push(Matcher::Value {
                                path: vec!["url".into()],
                                fixed: Fixed { pattern: false, value: Value::String(u.into()) },
                            });
                        }
                    }
                    return out;
                }
            }
        }
        let mut prefix: Vec<Box<str>> = segs.iter().map(|s| Box::<str>::from(*s)).collect();
        self.collect_fixed(cur, &mut prefix, &mut out);
        out
    }

    fn collect_fixed(&self, node: NodeId, prefix: &mut Vec<Box<str>>, out: &mut Vec<Matcher>) {
        let n = &self.nodes[node as usize];
        if let Some(f) = &n.fixed {
            out.push(Matcher::Value { path: prefix.clone(), fixed: f.clone() });
            return;
        }
        for &c in &n.children {
            prefix.push(self.nodes[c as usize].name.clone());
            self.collect_fixed(c, prefix, out);
            prefix.pop();
        }
    }

    fn child_by_name(&self, node: NodeId, name: &str) -> Option<NodeId> {
        self.nodes[node as usize].children.iter().copied().find(|&c| self.nodes[c as usize].name.as_ref() == name)
    }

    fn finish_node(&mut self, id: NodeId, by_id: &HashMap<&str, NodeId>) {
        let mut children = std::mem::take(&mut self.nodes[id as usize].children);
        children.sort_by(|a, b| self.nodes[*a as usize].name.cmp(&self.nodes[*b as usize].name));
        let slice_required = |c: NodeId| {
            self.nodes[c as usize].slicing.as_ref().is_some_and(|sl| {
                sl.slices.iter().any(|s| !s.matchers.is_empty() && self.nodes[s.node as usize].min > 0)
            })
        };
        let required = children
            .iter()
            .enumerate()
            .filter(|&(_, &c)| self.nodes[c as usize].min > 0 || slice_required(c))
            .map(|(i, &c)| (c, i as u32))
            .collect();
        let choices = children
            .iter()
            .enumerate()
            .filter(|&(_, &c)| self.nodes[c as usize].choice)
            .map(|(i, &c)| (c, i as u32))
            .collect();
        let has_children = !children.is_empty();
        let content_ref = self.nodes[id as usize]
            .content_ref
            .as_deref()
            .and_then(|r| r.rsplit('#').next())
            .and_then(|p| by_id.get(p).copied());
        let child_keys = children.iter().map(|&c| (name_prefix(&self.nodes[c as usize].name), c)).collect();
        let n = &mut self.nodes[id as usize];
        n.children = children;
        n.child_keys = child_keys;
        n.required = required;
        n.choices = choices;
        if has_children {
            n.content = Some(id);
        } else if let Some(target) = content_ref {
            n.content = Some(target);
            n.content_ref = None;
        }
    }

    /// Points elements without children at their datatype.
    fn link(&mut self) {
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if n.content.is_some() || n.types.len() != 1 {
                continue;
            }
            let t = &n.types[0];
            let target = match t.kind {
                Kind::Complex => self.datatype(&t.code),
                Kind::Backbone => self.datatype("BackboneElement"),
                _ => None,
            };
            self.nodes[i].content = target;
        }
    }
}

/// The first 8 bytes of a name, zero-padded, as a big-endian integer: comparing these orders
/// names like comparing the strings (names never contain NUL).
pub(crate) fn name_prefix(name: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = name.len().min(8);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

/// A node for one snapshot element.
fn element_node(ed: &ElementDefinition, relaxed: bool, parent_is_root: bool) -> Node {
    let last = ed.path.rsplit('.').next().unwrap_or(&ed.path);
    let choice = last.ends_with("[x]");
    let mut n = Node::new(last.trim_end_matches("[x]"), &ed.path);
    n.choice = choice;
    let base_max = ed.base.as_ref().and_then(|b| b.max.as_deref()).or(ed.max.as_deref()).unwrap_or("1");
    n.array = base_max != "1" && base_max != "0";
    let parse_max = |m: Option<&str>| match m {
        Some("*") | None => None,
        Some(v) => v.parse().ok(),
    };
    if relaxed {
        n.min = ed.base.as_ref().and_then(|b| b.min).unwrap_or(0);
        n.max = parse_max(Some(base_max));
    } else {
        n.min = ed.min.unwrap_or(0);
        n.max = parse_max(ed.max.as_deref());
    }
    if !(relaxed && choice) {
        n.types = ed.types.iter().map(|t| type_ref(&t.code, &t.profile)).collect();
        // A resource's own `id` is typed System.String in snapshots but is an `id`.
        if parent_is_root && last == "id" {
            n.types = vec![type_ref("id", &[])];
        }
    }
    if !relaxed && let Some((pattern, v)) = ed.fixed_or_pattern() {
        n.fixed = Some(Fixed { pattern, value: v.clone() });
    }
    n.content_ref = ed.content_reference.as_deref().map(Into::into);
    // A contentReference element has no type of its own: it is a backbone like its target.
    if n.types.is_empty() && n.content_ref.is_some() {
        n.types = vec![type_ref("BackboneElement", &[])];
    }
    n
}

/// Classifies a type code.
pub(crate) fn type_ref(code: &str, profiles: &[String]) -> TypeRef {
    let kind = if let Some(p) = Primitive::from_code(code) {
        Kind::Primitive(p)
    } else if code == "Resource" || datatypes::is_resource_type(code) {
        Kind::Resource
    } else if code == "BackboneElement" || code == "Element" {
        Kind::Backbone
    } else {
        Kind::Complex
    };
    TypeRef { code: code.into(), kind, profiles: profiles.iter().map(|p| p.as_str().into()).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_can_be_walked() {
        let s = Schema::load();
        assert!(s.load_errors.is_empty(), "{:?}", s.load_errors);
        let roots: std::collections::HashSet<NodeId> = s
            .profiles
            .iter()
            .map(|p| p.root)
            .chain(s.datatypes.values().copied())
            .chain([s.generic_resource])
            .collect();
        let untyped: Vec<&str> = s
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| !roots.contains(&(*i as NodeId)) && !n.choice && n.types.is_empty())
            .map(|(_, n)| n.path.as_ref())
            .collect();
        assert!(untyped.is_empty(), "elements without a type: {:?}", &untyped[..untyped.len().min(10)]);
        // Complex elements without children in the snapshot point at a datatype.
        let unlinked: Vec<&str> = s
            .nodes
            .iter()
            .filter(|n| n.types.len() == 1 && matches!(n.types[0].kind, Kind::Complex | Kind::Backbone))
            .filter(|n| n.content.is_none())
            .map(|n| n.path.as_ref())
            .collect();
        assert!(unlinked.is_empty(), "complex elements without content: {:?}", &unlinked[..unlinked.len().min(10)]);
    }

    #[test]
    fn choice_suffixes_and_prefixes() {
        let s = Schema::load();
        assert_eq!(s.type_for_suffix("DateTime").map(|t| t.code.as_ref()), Some("dateTime"));
        assert_eq!(s.type_for_suffix("Quantity").map(|t| t.code.as_ref()), Some("Quantity"));
        assert!(s.type_for_suffix("Datetime").is_none());
        assert!(name_prefix("identifier") > name_prefix("id"));
        assert!(name_prefix("a") < name_prefix("b"));
        let p = s.profile("http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS|1").expect("JP_Patient_eCS");
        assert_eq!(p.type_name.as_ref(), "Patient");
    }
}
