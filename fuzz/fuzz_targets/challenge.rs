//! The WWW-Authenticate parser on arbitrary text: never panics, and every
//! challenge it returns has a non-empty scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2::challenge::{bearer_error, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    for c in parse(header) {
        assert!(!c.scheme().is_empty());
        let _ = (c.param("error"), c.token68(), c.params().count());
    }
    let _ = bearer_error([header, header]);
});
