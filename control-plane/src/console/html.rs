//! HTML output: the one escaping helper every user-supplied string goes
//! through ([`e`]), URL encoding for query values and path segments, and
//! the page layout (head, navigation, sign-out form) with small builders
//! for form fields, notices and tables.
//!
//! Pages are plain strings built with `format!`: anything that did not come
//! from this crate's own literals is passed through [`e`] (or [`url`] for
//! URLs) where it is interpolated. No inline script or style is ever
//! written: the Content-Security-Policy would block it.

use std::fmt::Write as _;

/// HTML-escapes `s` for text and for double- or single-quoted attribute
/// values.
#[must_use]
pub fn e(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `s` for a query value or a path segment (everything but
/// ASCII letters, digits and `-_.~`).
#[must_use]
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A Unix-ms time as `YYYY-MM-DD HH:MM:SS UTC`.
#[must_use]
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The pages of an app, in the order of its navigation: (path under
/// `/console/apps/{app}`, label). A new page group adds a module and an
/// entry here.
pub const APP_PAGES: &[(&str, &str)] = &[
    ("", "Settings"),
    ("/overview", "Overview"),
    ("/keys", "Keys"),
    ("/channels", "Channels"),
    ("/debug", "Debug console"),
    ("/publish", "Event creator"),
    ("/tokens", "Token generator"),
    ("/namespaces", "Namespaces"),
    ("/webhooks", "Webhooks"),
    ("/usage", "Usage"),
];

/// What a page shows around its body.
pub struct Layout<'a> {
    /// The page title (plain text; escaped here).
    pub title: &'a str,
    /// The session's CSRF token, for the sign-out form; `None` on the
    /// sign-in pages.
    pub csrf: Option<&'a str>,
    /// The app whose pages are shown, and the current page's path under it.
    pub app: Option<(&'a str, &'a str)>,
}

/// A whole page: `layout` around `body` (already HTML).
#[must_use]
pub fn page(layout: &Layout<'_>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(csrf) = layout.csrf {
        let _ = write!(
            nav,
            r#"<nav aria-label="Console"><a href="/console/apps">Apps</a></nav><form method="post" action="/console/signout" class="signout"><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form>"#,
            e(csrf)
        );
    }
    let mut app_nav = String::new();
    if let Some((app, current)) = layout.app {
        app_nav.push_str(r#"<nav class="tabs" aria-label="App"><ul>"#);
        for (path, label) in APP_PAGES {
            let here = if *path == current { r#" aria-current="page""# } else { "" };
            let _ = write!(app_nav, r#"<li><a href="/console/apps/{}{path}"{here}>{label}</a></li>"#, url(app));
        }
        app_nav.push_str("</ul></nav>");
    }
    let heading = match layout.app {
        Some((app, _)) => format!(r#"<p class="crumb"><a href="/console/apps">Apps</a> / <code>{}</code></p>"#, e(app)),
        None => String::new(),
    };
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Herald console</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/assets/console.css"><script src="/console/assets/console.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><a class="brand" href="/console">Herald console</a>{nav}</header>
<main id="main">{heading}{app_nav}<h1>{title}</h1>
{body}</main></body></html>
"##,
        title = e(layout.title),
    )
}

/// A notice: `kind` is `ok` or `error`; the word before the text says it
/// too, so the meaning does not rest on colour.
#[must_use]
pub fn notice(kind: &str, text: &str) -> String {
    let (class, word, role) = if kind == "ok" { ("ok", "Done:", "status") } else { ("error", "Error:", "alert") };
    format!(r#"<p class="notice {class}" role="{role}"><strong>{word}</strong> {}</p>"#, e(text))
}

/// The hidden CSRF field of a form.
#[must_use]
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, e(csrf))
}

/// A labelled input, its value kept and its error (if any) beside it.
#[must_use]
pub fn field(name: &str, label: &str, kind: &str, value: &str, error: Option<&str>, hint: &str) -> String {
    let id = format!("f-{name}");
    let (invalid, err) = match error {
        Some(msg) => (
            format!(r#" aria-invalid="true" aria-describedby="{id}-err""#),
            format!(r#"<span class="field-error" id="{id}-err"><strong>Error:</strong> {}</span>"#, e(msg)),
        ),
        None => (String::new(), String::new()),
    };
    let hint = if hint.is_empty() { String::new() } else { format!(r#"<span class="hint">{}</span>"#, e(hint)) };
    if kind == "textarea" {
        return format!(
            r#"<div class="field"><label for="{id}">{}</label>{hint}<textarea id="{id}" name="{name}" rows="5"{invalid}>{}</textarea>{err}</div>"#,
            e(label),
            e(value)
        );
    }
    format!(
        r#"<div class="field"><label for="{id}">{}</label>{hint}<input id="{id}" name="{name}" type="{kind}" value="{}"{invalid}>{err}</div>"#,
        e(label),
        e(value)
    )
}

/// A labelled checkbox.
#[must_use]
pub fn checkbox(name: &str, label: &str, checked: bool) -> String {
    let id = format!("f-{name}");
    let checked = if checked { " checked" } else { "" };
    format!(
        r#"<div class="field check"><input id="{id}" name="{name}" type="checkbox" value="on"{checked}><label for="{id}">{}</label></div>"#,
        e(label)
    )
}

/// A value shown once with a copy button (the button needs JavaScript;
/// the value is selectable without it).
#[must_use]
pub fn secret(id: &str, label: &str, value: &str) -> String {
    format!(
        r#"<div class="secret"><p><strong>{}</strong> (shown once: copy it now)</p><pre id="{id}" tabindex="0">{}</pre><button type="button" class="copy" data-copy="{id}">Copy</button></div>"#,
        e(label),
        e(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            e(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url("a b/c:d#e"), "a%20b%2Fc%3Ad%23e");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
    }
}
