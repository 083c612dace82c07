//! The token-response parser on arbitrary bytes: status and content type from
//! the first byte, body from the rest. It must never panic, and whatever it
//! accepts must be usable.
#![no_main]

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_oauth2::endpoint::parse_token_response;
use tower_oauth2::token::{IssuedAt, Token};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = [200u16, 201, 302, 400, 401, 429, 500, 502, 503][selector as usize % 9];
    let content_type = ["application/json", "application/x-www-form-urlencoded", "text/plain", "text/html"]
        [(selector as usize / 9) % 4];
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if selector & 0x80 != 0 {
        headers.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
    }
    let issued = IssuedAt::now();
    match parse_token_response(StatusCode::from_u16(status).unwrap(), &headers, body, issued) {
        Ok(token) => {
            assert!(!token.access_token().expose_secret().is_empty());
            let _ = (token.expires_at(), token.is_expired(), token.remaining_at(issued.instant()));
            let _ = format!("{token:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"), e.is_retryable(), e.kind(), e.retry_after());
        }
    }
    let _ = Token::from_json(body, issued);
    let _ = Token::from_form(body, issued);
});
