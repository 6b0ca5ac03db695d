//! The gate as the service applies it for one request: the decision context (the user's
//! facility in the registry, each person's consent, residence, care relationships and emergency
//! grants) is loaded from the store once per request and handed to [`musubi_gate::decide`] and
//! [`musubi_gate::search_scope`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use musubi_domain::FacilityCode;
use musubi_fhir::ResourceType;
use musubi_gate::{
    Actor, CareKind, CareRelation, ConsentSettings, Context, Decision, EmergencyGrant, FacilityClass, FacilityInfo,
    Operation, PersonContext, RecordView, Residence, SharingPolicy, decide, search_scope,
};
use musubi_store::Scope;
use serde_json::Value;

use crate::{ApiError, Ctx, Service};

/// The registry entry of a facility as the gate sees it.
pub(crate) fn facility_info(row: &musubi_store::FacilityRow) -> Option<FacilityInfo> {
    Some(FacilityInfo {
        code: row.code.parse().ok()?,
        name: row.name.clone(),
        class: FacilityClass::from_code(&row.class).unwrap_or(FacilityClass::Other),
        prefecture: u8::try_from(row.prefecture).ok()?,
        area: row.area.clone(),
        views: row.views,
    })
}

/// One request's access context.
pub(crate) struct Access<'a> {
    svc: &'a Service,
    ctx: &'a Ctx,
    now: i64,
    facility: Option<FacilityInfo>,
    /// Facilities that do not disclose (開示): loaded for users only.
    withheld: Vec<FacilityCode>,
    /// The network's sharing policy (setting `network.participation`).
    policy: SharingPolicy,
    persons: RefCell<HashMap<String, Rc<PersonContext>>>,
}

impl<'a> Access<'a> {
    /// The context for `ctx` (reads the user's facility from the registry).
    pub(crate) fn new(svc: &'a Service, ctx: &'a Ctx) -> Result<Access<'a>, ApiError> {
        let (facility, withheld, policy) = match &ctx.actor {
            Actor::User(u) => {
                let code = u.facility.to_string();
                let (row, withheld, policy) = svc.store.read(|r| {
                    Ok((r.facility(&code)?, r.withheld_facilities()?, r.setting("network.participation")?))
                })?;
                (
                    row.as_ref().and_then(facility_info),
                    codes(&withheld).collect(),
                    SharingPolicy::from_setting(policy.as_deref()),
                )
            }
            _ => (None, Vec::new(), SharingPolicy::default()),
        };
        Ok(Access {
            svc,
            ctx,
            now: musubi_fhir::datetime::now_ms(),
            facility,
            withheld,
            policy,
            persons: RefCell::new(HashMap::new()),
        })
    }

    /// Whether the decision needs a person's context (users reading other facilities' data).
    fn needs_person(&self, rec: &RecordView) -> bool {
        matches!(&self.ctx.actor, Actor::User(u) if rec.facility != Some(u.facility))
    }

    /// The decision about one record.
    pub(crate) fn decide(&self, op: Operation, rec: &RecordView) -> Result<Decision, ApiError> {
        let person = match (&rec.person_id, self.needs_person(rec) && op == Operation::Read) {
            (Some(p), true) => Some(self.person(p)?),
            _ => None,
        };
        Ok(decide(
            &self.ctx.actor,
            op,
            rec,
            &Context {
                now: self.now,
                facility: self.facility.as_ref(),
                person: person.as_deref(),
                withheld: &self.withheld,
                policy: self.policy,
            },
        ))
    }

    /// The search scope of `rtype`, for searches about `person` (if the query names one).
    pub(crate) fn scope(&self, rtype: ResourceType, person: Option<&str>) -> Result<Scope, ApiError> {
        let ctx = match (person, &self.ctx.actor) {
            (Some(p), Actor::User(_)) => Some(self.person(p)?),
            _ => None,
        };
        Ok(search_scope(
            &self.ctx.actor,
            rtype,
            &Context {
                now: self.now,
                facility: self.facility.as_ref(),
                person: ctx.as_deref(),
                withheld: &self.withheld,
                policy: self.policy,
            },
        ))
    }

    /// A person's context, loaded once per request.
    pub(crate) fn person(&self, person_id: &str) -> Result<Rc<PersonContext>, ApiError> {
        if let Some(p) = self.persons.borrow().get(person_id) {
            return Ok(p.clone());
        }
        let p = Rc::new(self.svc.person_context(person_id, self.now)?);
        self.persons.borrow_mut().insert(person_id.to_owned(), p.clone());
        Ok(p)
    }
}

fn codes(list: &[String]) -> impl Iterator<Item = FacilityCode> + '_ {
    list.iter().filter_map(|c| c.parse().ok())
}

impl Service {
    /// Everything the gate needs about a person, from the store.
    pub(crate) fn person_context(&self, person_id: &str, now: i64) -> Result<PersonContext, ApiError> {
        let id = person_id.to_owned();
        let (consent, residence, treated, referred, visits, emergency, participating) = self.store.read(|r| {
            let mut treated = r.treating_facilities(&id)?;
            // Claims (レセプト) show use of a facility too, even before its records arrive.
            for pid in r.patients_of_person(&id)? {
                treated.extend(r.facilities_used_by_patient(&pid)?);
            }
            treated.sort();
            treated.dedup();
            Ok((
                r.consent(&id)?,
                r.residence(&id)?,
                treated,
                r.referral_recipients(&id)?,
                r.visit_consents(&id)?,
                r.emergency_grants(&id)?,
                r.participating(&id)?,
            ))
        })?;
        let consent = match consent {
            Some((json, ..)) => serde_json::from_str::<ConsentSettings>(&json)
                .map_err(|e| ApiError::internal(format!("consent settings of {person_id}: {e}")))?,
            None => ConsentSettings::default(),
        };
        let mut residence = match residence {
            Some((pref, area, recent)) => Residence {
                prefecture: u8::try_from(pref).unwrap_or(0),
                area,
                recent_prefectures: recent.split(',').filter_map(|p| p.trim().parse().ok()).collect(),
            },
            None => self.derived_residence(person_id)?,
        };
        residence.recent_prefectures.extend(self.prefectures_lived_in(person_id, now)?);
        let current = residence.prefecture;
        residence.recent_prefectures.retain(|p| *p != current && *p != 0);
        residence.recent_prefectures.sort_unstable();
        residence.recent_prefectures.dedup();
        let mut care: Vec<CareRelation> =
            codes(&treated).map(|f| CareRelation { facility: f, kind: CareKind::Treated, until: None }).collect();
        care.extend(codes(&referred).map(|f| CareRelation {
            facility: f,
            kind: CareKind::ReferralAddressed,
            until: None,
        }));
        care.extend(visits.iter().filter_map(|v| {
            Some(CareRelation { facility: v.facility.parse().ok()?, kind: CareKind::InPersonConsent, until: v.until })
        }));
        let emergency = emergency
            .into_iter()
            .filter(|g| g.until > now)
            .map(|g| EmergencyGrant { user_id: g.user_id, reason: g.reason, until: g.until })
            .collect();
        Ok(PersonContext { person_id: person_id.to_owned(), consent, residence, care, emergency, participating })
    }

    /// Prefectures the person lived in during the past 2 years (DESIGN.md's area tier): from
    /// the residences registered in the portal and from every version of their source patients'
    /// registrations (a facility's update of the address is a move).
    fn prefectures_lived_in(&self, person_id: &str, now: i64) -> Result<Vec<u8>, ApiError> {
        const TWO_YEARS: i64 = 2 * 365 * 86_400_000;
        let since = now - TWO_YEARS;
        let id = person_id.to_owned();
        let (registered, versions) = self.store.read(|r| {
            let registered = r.residence_prefectures_since(&id, since)?;
            let mut versions = Vec::new();
            for pid in r.patients_of_person(&id)? {
                versions.extend(r.patient_versions_since(&pid, since)?);
            }
            Ok((registered, versions))
        })?;
        let mut out: Vec<u8> = registered.into_iter().filter_map(|p| u8::try_from(p).ok()).collect();
        for (_, text) in versions {
            let Ok(p) = serde_json::from_str::<Value>(&text) else { continue };
            for a in p["address"].as_array().into_iter().flatten() {
                if let Some(pref) = a["state"].as_str().and_then(musubi_domain::prefecture_number) {
                    out.push(pref);
                }
            }
        }
        Ok(out)
    }

    /// The residence of a person without a registered one: the newest address of their source
    /// patients (prefecture from `state`, 二次医療圏 from `city` in the registry).
    fn derived_residence(&self, person_id: &str) -> Result<Residence, ApiError> {
        let id = person_id.to_owned();
        let addresses: Vec<(u8, String)> = self.store.read(|r| {
            let mut out = Vec::new();
            for pid in r.patients_of_person(&id)? {
                let Some(v) = r.version(ResourceType::Patient, &pid, None)? else { continue };
                let Some(text) = v.content else { continue };
                let Ok(p) = serde_json::from_str::<Value>(&text) else { continue };
                for a in p["address"].as_array().into_iter().flatten() {
                    if let (Some(pref), Some(city)) =
                        (a["state"].as_str().and_then(musubi_domain::prefecture_number), a["city"].as_str())
                    {
                        out.push((pref, city.to_owned()));
                    }
                }
            }
            Ok(out)
        })?;
        let Some((pref, city)) = addresses.into_iter().next() else {
            // Unknown residence: no area is the residence area, so nothing is open by default
            // (the safe side); consent in person at a visit still opens a facility.
            return Ok(Residence::default());
        };
        let area = self.store.read(|r| r.area_of_city(i64::from(pref), &city))?.unwrap_or_default();
        Ok(Residence { prefecture: pref, area, recent_prefectures: Vec::new() })
    }
}

/// The decision about a write or delete (no person context is needed: only administrators and
/// the record's own facility may write).
pub(crate) fn write_decision(actor: &Actor, op: Operation, rec: &RecordView) -> Decision {
    decide(actor, op, rec, &Context { now: musubi_fhir::datetime::now_ms(), ..Default::default() })
}

impl Access<'_> {
    /// The decision using only person contexts already loaded (for use inside a store snapshot,
    /// where loading more would need a second connection).
    pub(crate) fn decide_loaded(&self, op: Operation, rec: &RecordView) -> Decision {
        let persons = self.persons.borrow();
        let person = rec.person_id.as_ref().and_then(|p| persons.get(p)).cloned();
        decide(
            &self.ctx.actor,
            op,
            rec,
            &Context {
                now: self.now,
                facility: self.facility.as_ref(),
                person: person.as_deref(),
                withheld: &self.withheld,
                policy: self.policy,
            },
        )
    }
}
