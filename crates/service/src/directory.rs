//! The registry and account data that pages show beside the records: facility names, the
//! operator's lists of facilities and users, the choices at login, a patient's proxies. Each
//! read checks who asks (the web and the server reach no data but through the service).

use musubi_gate::Actor;
use musubi_store::{FacilityRow, ProxyGrantRow, UserRow};
use serde::Serialize;

use crate::credentials::session_hash;
use crate::people::require_privileged;
use crate::{ApiError, Ctx, ErrorKind, Service};

/// A facility of the registry, as pages and routes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacilityView {
    /// 医療機関コード.
    pub code: String,
    /// Name.
    pub name: String,
    /// `hospital`, `clinic`, `dental`, `pharmacy`, `other`.
    pub class: String,
    /// Prefecture number.
    pub prefecture: i64,
    /// 二次医療圏 id.
    pub area: String,
    /// 二次医療圏 name.
    pub area_name: String,
    /// Whether it discloses (開示) its data to the network.
    pub discloses: bool,
    /// Whether its staff view (閲覧) the network's data.
    pub views: bool,
}

impl From<FacilityRow> for FacilityView {
    fn from(f: FacilityRow) -> Self {
        FacilityView {
            code: f.code,
            name: f.name,
            class: f.class,
            prefecture: f.prefecture,
            area: f.area,
            area_name: f.area_name,
            discloses: f.discloses,
            views: f.views,
        }
    }
}

/// A clinician's or staff member's account as the operator's list shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Login name.
    pub login: String,
    /// Kanji name.
    pub name: String,
    /// Kana name.
    pub kana: String,
    /// Profession code.
    pub profession: String,
    /// Locked until (epoch ms).
    pub locked_until: Option<i64>,
    /// Disabled by the operator.
    pub disabled: bool,
    /// Facilities the user belongs to.
    pub facilities: Vec<String>,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            id: u.id,
            login: u.login,
            name: u.name,
            kana: u.kana,
            profession: u.profession,
            locked_until: u.locked_until,
            disabled: u.disabled,
            facilities: u.facilities,
        }
    }
}

/// A proxy of the portal actor's person: the grant, with the proxy account's display name
/// and login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyView {
    /// The grant.
    pub grant: ProxyGrantRow,
    /// The proxy's display name (empty when the account is gone).
    pub name: String,
    /// The proxy's login (empty when the account is gone).
    pub login: String,
}

/// The registry is read by the operator and by clinicians (names of facilities, addressees of
/// a referral); not by patients, systems or the bootstrap token.
fn may_read_registry(ctx: &Ctx) -> Result<(), ApiError> {
    match &ctx.actor {
        Actor::User(_) => Ok(()),
        _ => require_privileged(ctx),
    }
}

impl Service {
    /// Every facility of the registry.
    pub fn facilities(&self, ctx: &Ctx) -> Result<Vec<FacilityView>, ApiError> {
        may_read_registry(ctx)?;
        Ok(self.store.read(|r| r.facilities())?.into_iter().map(FacilityView::from).collect())
    }

    /// One facility of the registry.
    pub fn facility(&self, ctx: &Ctx, code: &str) -> Result<Option<FacilityView>, ApiError> {
        may_read_registry(ctx)?;
        Ok(self.store.read(|r| r.facility(code))?.map(FacilityView::from))
    }

    /// The operator's list of clinicians and staff.
    pub fn users(&self, ctx: &Ctx) -> Result<Vec<UserView>, ApiError> {
        require_privileged(ctx)?;
        Ok(self.store.read(|r| r.users())?.into_iter().map(UserView::from).collect())
    }

    /// The facilities (code, name) of the user who holds the session `token` — a session just
    /// opened by [`Service::login_user`], second factor or not — to choose which one to act for.
    pub fn login_facilities(&self, token: &str) -> Result<Vec<(String, String)>, ApiError> {
        let h = session_hash(token);
        let now = self.now();
        let Some(s) = self.store.read(|r| r.session(&h))?.filter(|s| s.kind == "user" && s.expires >= now) else {
            return Ok(Vec::new());
        };
        let Some(user) = self.store.read(|r| r.user(&s.subject))? else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(user.facilities.len());
        for code in user.facilities {
            let name = self.store.read(|r| r.facility(&code))?.map_or_else(|| code.clone(), |f| f.name);
            out.push((code, name));
        }
        Ok(out)
    }

    /// Whom the holder of the portal session `token` (just opened by
    /// [`Service::login_portal`]) may act for: (person id, label) — themselves and each
    /// person whose proxy they are, named by those persons' portal accounts.
    pub fn portal_login_choices(&self, token: &str) -> Result<Vec<(String, String)>, ApiError> {
        let h = session_hash(token);
        let now = self.now();
        let Some(s) = self.store.read(|r| r.session(&h))?.filter(|s| s.kind == "portal" && s.expires >= now) else {
            return Ok(Vec::new());
        };
        let Some(acct) = self.store.read(|r| r.portal(&s.subject))? else { return Ok(Vec::new()) };
        let mut choices = Vec::new();
        if let Some(p) = &acct.person_id {
            choices.push((p.clone(), format!("{}（ご本人）", acct.name)));
        }
        let grants = self.store.read(|r| r.grants_of_proxy(&acct.id))?;
        for g in grants.into_iter().filter(|g| g.revoked.is_none()) {
            let name = self
                .store
                .read(|r| r.portal_of_person(&g.person_id))?
                .map_or_else(|| "（登録者）".to_owned(), |a| a.name);
            choices.push((g.person_id, format!("{name}（{}）", g.relation)));
        }
        Ok(choices)
    }

    /// The portal actor's proxies, each with the proxy's display name and login.
    pub fn proxies_with_accounts(&self, ctx: &Ctx) -> Result<Vec<ProxyView>, ApiError> {
        let grants = self.proxies(ctx)?;
        let mut out = Vec::with_capacity(grants.len());
        for g in grants {
            let acct = self.store.read(|r| r.portal(&g.proxy_account))?;
            let (name, login) = acct.map(|a| (a.name, a.login)).unwrap_or_default();
            out.push(ProxyView { grant: g, name, login });
        }
        Ok(out)
    }

    /// Until when the calling clinician's own emergency access to `person_id` holds (the
    /// latest of their grants still running at `now_ms`), if any.
    pub fn own_emergency_until(&self, ctx: &Ctx, person_id: &str, now_ms: i64) -> Result<Option<i64>, ApiError> {
        let Actor::User(u) = &ctx.actor else {
            return Err(ApiError::new(ErrorKind::Forbidden, "医療従事者のログインが必要です"));
        };
        let grants = self.store.read(|r| r.emergency_grants(person_id))?;
        Ok(grants.into_iter().filter(|g| g.user_id == u.user_id && g.until > now_ms).map(|g| g.until).max())
    }
}

#[cfg(test)]
mod tests {
    use musubi_domain::Profession;
    use musubi_gate::{PortalActor, UserActor};
    use musubi_store::Store;

    use super::*;
    use crate::people::NewFacility;

    fn ctx(actor: Actor) -> Ctx {
        Ctx { actor, address: None, base_url: String::new() }
    }

    fn clinician() -> Ctx {
        ctx(Actor::User(UserActor {
            user_id: "u1".into(),
            login: "dr".into(),
            name: "医師".into(),
            profession: Profession::Doctor,
            facility: "1310000019".parse().unwrap(),
        }))
    }

    fn patient() -> Ctx {
        ctx(Actor::Portal(PortalActor {
            account_id: "a1".into(),
            name: "患者".into(),
            person_id: "p1".into(),
            proxy_relation: None,
            may_view_records: true,
        }))
    }

    #[test]
    fn the_registry_is_for_clinicians_and_the_operator_the_user_list_for_the_operator() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::new(Store::open_sqlite(dir.path()).unwrap(), "test");
        let f = NewFacility {
            code: "1310000019".into(),
            name: "結び病院".into(),
            class: "hospital".into(),
            prefecture: 13,
            area: "1301".into(),
            area_name: "区中央部".into(),
            discloses: true,
            views: true,
        };
        svc.register_facility(&Ctx::operator("op"), f, vec![]).unwrap();
        let op = Ctx::operator("op");
        assert_eq!(svc.facilities(&op).unwrap().len(), 1);
        assert_eq!(svc.facility(&clinician(), "1310000019").unwrap().map(|f| f.name).as_deref(), Some("結び病院"));
        let system = ctx(Actor::System { name: "emr".into(), facility: "1310000019".parse().unwrap() });
        let boot = ctx(Actor::Bootstrap { name: "admin".into() });
        for who in [&patient(), &system, &boot] {
            assert_eq!(svc.facilities(who).unwrap_err().kind, ErrorKind::Forbidden);
            assert_eq!(svc.facility(who, "1310000019").unwrap_err().kind, ErrorKind::Forbidden);
        }
        assert!(svc.users(&op).unwrap().is_empty());
        for who in [&clinician(), &patient(), &system, &boot] {
            assert_eq!(svc.users(who).unwrap_err().kind, ErrorKind::Forbidden);
        }
        // A clinician's own emergency grants only; a patient asks nothing of them.
        assert_eq!(svc.own_emergency_until(&clinician(), "p1", 0).unwrap(), None);
        assert_eq!(svc.own_emergency_until(&patient(), "p1", 0).unwrap_err().kind, ErrorKind::Forbidden);
        // A token that opens no session chooses nothing.
        assert!(svc.login_facilities("nonsense").unwrap().is_empty());
        assert!(svc.portal_login_choices("nonsense").unwrap().is_empty());
        assert_eq!(svc.active_admin_token("0".repeat(64).as_str(), 0).unwrap(), None);
    }
}
