//! A person's record as the caller may see it: the data the service hands to the projections.

use std::sync::Arc;

use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use serde::Serialize;
use serde_json::Value;

use crate::Derived;

/// One record of the person.
#[derive(Debug, Clone, Serialize)]
pub struct RecordEntry {
    /// Type.
    pub rtype: ResourceType,
    /// Logical id.
    pub id: String,
    /// Version.
    pub version: i64,
    /// Class.
    pub class: ResourceClass,
    /// Source facility (code).
    pub facility: Option<String>,
    /// Its name in the registry.
    pub facility_name: Option<String>,
    /// Clinical date (epoch ms).
    pub clinical_date: Option<i64>,
    /// Flags.
    #[serde(skip)]
    pub flags: Flags,
    /// The resource (shared with the service's cache of parsed versions).
    pub resource: Arc<Value>,
    /// What readers derived from this version (shared with the cache likewise).
    #[serde(skip)]
    pub derived: Derived,
}

/// A person's record as the caller may see it.
#[derive(Debug, Clone, Serialize)]
pub struct PersonRecord {
    /// The person.
    pub person_id: String,
    /// The source patients (Patient ids) linked to the person.
    pub patients: Vec<String>,
    /// The visible records, newest clinical date first (the Patient resources included).
    pub entries: Vec<RecordEntry>,
    /// Set when the access was by emergency grant (the reason).
    pub emergency: Option<String>,
}

impl PersonRecord {
    /// The entries of one class.
    pub fn of_class(&self, class: ResourceClass) -> impl Iterator<Item = &RecordEntry> {
        self.entries.iter().filter(move |e| e.class == class)
    }

    /// The entries of one resource type.
    pub fn of_type(&self, rtype: ResourceType) -> impl Iterator<Item = &RecordEntry> {
        self.entries.iter().filter(move |e| e.rtype == rtype)
    }
}
