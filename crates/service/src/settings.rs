//! The network's settings an operator may change (`musubi setting`, `PUT /api/admin/settings/{key}`).
//!
//! A setting widens or narrows who sees what (`network.participation` decides whether records
//! of people who never agreed to take part are shown at all), so a change is validated here,
//! written in the same transaction as its audit record, and refused to anyone but an operator.

use musubi_store::AccountWrite;

use crate::{ApiError, AuditAction, AuditOutcome, Ctx, ErrorKind, Service};

/// A setting: its key, what it means, and which values it takes.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key.
    pub key: &'static str,
    /// What it decides (Japanese, for the console and the CLI).
    pub label_ja: &'static str,
    /// The value when none is stored.
    pub default: &'static str,
    allowed: Allowed,
}

#[derive(Debug, Clone, Copy)]
enum Allowed {
    OneOf(&'static [&'static str]),
    Range(i64, i64),
}

/// Every setting an operator may change.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "network.participation",
        label_ja: "参加同意の方式（opt-in: 参加同意のある患者だけ共有 / per-visit: 来院時の同意ごと）",
        default: "opt-in",
        allowed: Allowed::OneOf(&["opt-in", "per-visit"]),
    },
    Setting {
        key: "emergency.hours",
        label_ja: "緊急時アクセスの有効時間（1〜12 時間）",
        default: "4",
        allowed: Allowed::Range(1, 12),
    },
];

/// The setting named `key`, if it is one.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

impl Setting {
    /// Checks a new value; the error says what is allowed (Japanese).
    pub fn check(&self, value: &str) -> Result<(), String> {
        match self.allowed {
            Allowed::OneOf(values) if values.contains(&value) => Ok(()),
            Allowed::OneOf(values) => Err(format!("{}: {value:?} は使えません（{}）", self.key, values.join(" / "))),
            Allowed::Range(lo, hi) if value.parse::<i64>().is_ok_and(|v| (lo..=hi).contains(&v)) => Ok(()),
            Allowed::Range(lo, hi) => Err(format!("{}: {value:?} は使えません（{lo}〜{hi} の整数）", self.key)),
        }
    }
}

impl Service {
    /// The current value of a known setting (the default when none is stored).
    pub fn setting_value(&self, key: &str) -> Result<String, ApiError> {
        let Some(s) = find(key) else { return Err(unknown(key)) };
        Ok(self.store.setting(key)?.unwrap_or_else(|| s.default.to_owned()))
    }

    /// Changes a setting (operator only), with its audit record in the same transaction.
    pub fn change_setting(&self, ctx: &Ctx, key: &str, value: &str) -> Result<(), ApiError> {
        if !ctx.actor.is_privileged() {
            return Err(ApiError::new(ErrorKind::Forbidden, "設定の変更は運営管理者のみが行えます"));
        }
        let Some(s) = find(key) else { return Err(unknown(key)) };
        s.check(value).map_err(ApiError::bad_request)?;
        let old = self.store.setting(key)?.unwrap_or_else(|| s.default.to_owned());
        let mut a = self.audit_record(ctx, AuditAction::Update, "change-setting", AuditOutcome::Success);
        a.entities = vec![format!("setting/{key}")];
        a.query = Some(format!("{key}: {old} -> {value}"));
        self.store.write_accounts(vec![AccountWrite::Setting { key: key.into(), value: value.into() }], vec![a])?;
        tracing::info!(key, value, "setting changed");
        Ok(())
    }
}

fn unknown(key: &str) -> ApiError {
    let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    ApiError::new(ErrorKind::NotFound, format!("設定 {key:?} はありません（{}）", known.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        let p = find("network.participation").unwrap();
        assert!(p.check("opt-in").is_ok());
        assert!(p.check("per-visit").is_ok());
        assert!(p.check("everyone").is_err());
        let h = find("emergency.hours").unwrap();
        assert!(h.check("1").is_ok() && h.check("12").is_ok());
        for bad in ["0", "13", "4h", "", "-1"] {
            assert!(h.check(bad).is_err(), "{bad}");
        }
        assert!(find("audit.off").is_none());
    }
}
