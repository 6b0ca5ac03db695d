//! The page shell (header, navigation, main, footer), small building blocks shared by every
//! page, and date formatting for people (JST, `2026/11/03`).

use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use musubi_gate::{PortalActor, UserActor};

/// Who the page is for (decides the navigation).
pub(crate) enum Nav<'a> {
    /// Nobody logged in.
    Anonymous,
    /// A clinician or staff member.
    Clinician(&'a UserActor, &'a str),
    /// A patient or proxy.
    Portal(&'a PortalActor, &'a str),
    /// An operator.
    Operator(&'a str),
}

/// An HTML response.
pub(crate) fn page(title: &str, nav: Nav<'_>, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex, nofollow";
                title { (title) " — Musubi" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                a.skip href="#main" { "本文へ移動" }
                header.top {
                    a.brand href=(home_of(&nav)) { "結 Musubi" }
                    (nav_links(&nav))
                }
                main #main { (body) }
                footer.foot {
                    p { "Musubi 地域医療情報連携ネットワーク — すべての閲覧は記録され、患者さんご本人が確認できます。" }
                }
            }
        }
    };
    let mut r = doc.into_string().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn home_of(nav: &Nav<'_>) -> &'static str {
    match nav {
        Nav::Anonymous => "/",
        Nav::Clinician(..) => "/patients",
        Nav::Portal(..) => "/portal",
        Nav::Operator(..) => "/admin",
    }
}

fn logout_form(action: &str, csrf: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button.link type="submit" { "ログアウト" }
        }
    }
}

/// "Log out everywhere": ends every session of the account, on every device.
fn logout_everywhere_form(action: &str, csrf: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button.link type="submit" { "すべての端末からログアウト" }
        }
    }
}

fn nav_links(nav: &Nav<'_>) -> Markup {
    html! {
        nav aria-label="メインメニュー" {
            @match nav {
                Nav::Anonymous => {
                    a href="/login" { "医療従事者" }
                    a href="/portal" { "患者ポータル" }
                    a href="/admin" { "運営事務局" }
                }
                Nav::Clinician(u, csrf) => {
                    a href="/patients" { "患者検索" }
                    a href="/referrals" { "文書送受信" }
                    span.who { (u.name) "（" (u.profession.label_ja()) "・" (u.facility.as_str()) "）" }
                    (logout_form("/logout", csrf))
                    (logout_everywhere_form("/logout/everywhere", csrf))
                }
                Nav::Portal(p, csrf) => {
                    a href="/portal" { "ホーム" }
                    a href="/portal/consent" { "開示設定" }
                    a href="/portal/history" { "閲覧履歴" }
                    a href="/portal/record" { "わたしの記録" }
                    @if p.proxy_relation.is_none() { a href="/portal/proxies" { "代理人" } }
                    span.who { (p.name) @if let Some(r) = &p.proxy_relation { "（代理人: " (r) "）" } }
                    (logout_form("/portal/logout", csrf))
                    (logout_everywhere_form("/portal/logout/everywhere", csrf))
                }
                Nav::Operator(csrf) => {
                    a href="/admin" { "運営" }
                    a href="/admin/facilities" { "施設" }
                    a href="/admin/users" { "利用者" }
                    a href="/admin/audit" { "監査レポート" }
                    a href="/admin/emergency" { "緊急閲覧の確認" }
                    a href="/admin/mpi" { "名寄せ確認" }
                    (logout_form("/admin/logout", csrf))
                }
            }
        }
    }
}

/// A page for an error.
pub(crate) fn error_page(title: &str, message: &str) -> Response {
    page(
        title,
        Nav::Anonymous,
        html! {
            section.card.error role="alert" {
                h1 { (title) }
                p { (message) }
                p { a href="/" { "トップページへ戻る" } }
            }
        },
    )
}

/// The console opened with the bootstrap token, on any page but the one that creates the
/// first operator (403).
pub(crate) fn bootstrap_only_page(message: &str) -> Response {
    page(
        "この操作はできません",
        Nav::Anonymous,
        html! {
            section.card.error role="alert" {
                h1 { "この操作はできません" }
                p { (message) }
                p { a.button href="/admin/first-operator" { "最初の運営者を作成" } }
                p { a href="/login?next=/admin" { "運営者アカウントでログイン" } }
            }
        },
    )
}

/// A hidden CSRF field.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A message box (status 200 pages that report an outcome).
pub(crate) fn notice(kind: &str, text: &str) -> Markup {
    html! { div class={"notice " (kind)} role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

/// Percent-encodes a query value.
pub(crate) fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// `2026/11/03` (JST) of epoch milliseconds.
pub(crate) fn date_ms(ms: i64) -> String {
    musubi_fhir::datetime::jst_date(ms)
        .map(|d| format!("{:04}/{:02}/{:02}", d.year(), d.month() as u8, d.day()))
        .unwrap_or_default()
}

/// `2026/11/03 14:05` (JST) of epoch milliseconds.
pub(crate) fn datetime_ms(ms: i64) -> String {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    let dt = dt.to_offset(musubi_fhir::datetime::JST);
    format!("{:04}/{:02}/{:02} {:02}:{:02}", dt.year(), dt.month() as u8, dt.day(), dt.hour(), dt.minute())
}

/// A FHIR date or dateTime for people: `2026/11/03` (the time of a dateTime is shown in JST
/// when `with_time`).
pub(crate) fn fhir_date(s: &str, with_time: bool) -> String {
    if s.len() > 10
        && with_time
        && let Ok(r) = musubi_fhir::datetime::parse_range(s)
    {
        return datetime_ms(r.lo);
    }
    if s.len() >= 10
        && let Ok(r) = musubi_fhir::datetime::parse_range(s)
    {
        return date_ms(r.lo);
    }
    s.replace('-', "/")
}

/// An instant string (`2026-11-03T05:05:00.000Z`) in JST for people.
pub(crate) fn instant(s: &str) -> String {
    fhir_date(s, true)
}

/// Raw markup already escaped by us (SVG built with escaping).
pub(crate) fn trusted(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_shown_in_jst() {
        // 2026-11-02T20:00Z is the 3rd in Japan.
        assert_eq!(fhir_date("2026-11-02T20:00:00Z", false), "2026/11/03");
        assert_eq!(fhir_date("2026-11-02T20:00:00Z", true), "2026/11/03 05:00");
        assert_eq!(fhir_date("2025-04-01", true), "2025/04/01");
        assert_eq!(fhir_date("2025-04", false), "2025/04");
    }

    #[test]
    fn markup_is_escaped() {
        let m = html! { p { ("<script>alert(1)</script>") } };
        assert_eq!(m.into_string(), "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
    }
}
