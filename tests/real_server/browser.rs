//! A browser, just enough for the provider's own login and consent pages.

use http::header::{COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, StatusCode};
use tower_oauth2::authorize::Authorization;

use super::client::{exchange, form_request, http_client, HttpClient};
use super::REDIRECT_URI;

/// What the user answers on the consent page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

pub struct Browser {
    http: HttpClient,
    /// (name, value, path)
    cookies: Vec<(String, String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: http_client(),
            cookies: Vec::new(),
        }
    }

    /// Follows the authorization URL through the login and consent pages as
    /// a user would (any login is accepted by the provider's development
    /// login page) and returns the query of the redirect to `REDIRECT_URI`.
    pub async fn authorize(&mut self, auth: &Authorization, decision: Decision) -> String {
        let mut method = Method::GET;
        let mut url = auth.url().to_owned();
        let mut form: Vec<(&str, &str)> = Vec::new();
        for _ in 0..12 {
            let (status, location, page) = self.send(method.clone(), &url, &form).await;
            if let Some(location) = location {
                let location = absolute(&url, &location);
                if let Some(query) = location.strip_prefix(REDIRECT_URI) {
                    return query.trim_start_matches('?').to_owned();
                }
                (method, url, form) = (Method::GET, location, Vec::new());
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            (method, url, form) = answer(&url, &page, decision);
        }
        panic!("no redirect to {REDIRECT_URI} after 12 steps");
    }

    /// One request with this browser's cookies; it keeps the ones the
    /// answer sets. Status, `Location`, page.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let mut request = form_request(method, url, form);
        let path = request.uri().path().to_owned();
        let cookie = self
            .cookies
            .iter()
            .filter(|(_, _, p)| path.starts_with(p.as_str()))
            .map(|(n, v, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !cookie.is_empty() {
            let cookie = HeaderValue::from_str(&cookie).unwrap();
            request.headers_mut().insert(COOKIE, cookie);
        }
        let (status, headers, page) = exchange(&self.http, request).await;
        for set in headers.get_all(SET_COOKIE) {
            self.store_cookie(set.to_str().unwrap());
        }
        let location = headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, location, page)
    }

    fn store_cookie(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let mut path = "/".to_owned();
        let mut expired = false;
        for attr in parts {
            let lower = attr.to_ascii_lowercase();
            if let Some(p) = lower.strip_prefix("path=") {
                path = attr[attr.len() - p.len()..].to_owned();
            } else if lower.starts_with("expires=thu, 01 jan 1970") || lower == "max-age=0" {
                expired = true;
            }
        }
        self.cookies.retain(|(n, _, p)| !(n == name && *p == path));
        if !expired {
            self.cookies.push((name.to_owned(), value.to_owned(), path));
        }
    }
}

/// What the user does on the login or consent `page` at `url`: the next
/// request's method, URL and form.
fn answer(
    url: &str,
    page: &str,
    decision: Decision,
) -> (Method, String, Vec<(&'static str, &'static str)>) {
    let action = attribute_after(page, "<form", "action=\"")
        .unwrap_or_else(|| panic!("no form on {url}: {page}"));
    let prompt = attribute_after(page, "name=\"prompt\"", "value=\"")
        .unwrap_or_else(|| panic!("no prompt on {url}: {page}"));
    match (prompt.as_str(), decision) {
        ("login", _) => (
            Method::POST,
            action,
            vec![("prompt", "login"), ("login", "alice"), ("password", "any")],
        ),
        ("consent", Decision::Allow) => (Method::POST, action, vec![("prompt", "consent")]),
        ("consent", Decision::Deny) => {
            let cancel = page
                .find("\">[ Cancel ]")
                .and_then(|end| page[..end].rfind("href=\"").map(|start| (start, end)))
                .map(|(start, end)| page[start + 6..end].to_owned())
                .unwrap_or_else(|| panic!("no cancel link: {page}"));
            (Method::GET, cancel, Vec::new())
        }
        (other, _) => panic!("unexpected prompt {other:?}: {page}"),
    }
}

/// `location` resolved against `base` (the provider sends both absolute and
/// path-only redirects).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let uri: http::Uri = base.parse().unwrap();
    format!(
        "{}://{}{location}",
        uri.scheme_str().unwrap(),
        uri.authority().unwrap()
    )
}

/// The value of the first `attr"…"` after the first `anchor` in an HTML page,
/// with HTML's `&amp;` undone.
fn attribute_after(page: &str, anchor: &str, attr: &str) -> Option<String> {
    let rest = &page[page.find(anchor)?..];
    let rest = &rest[rest.find(attr)? + attr.len()..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}
