//! A bounded, deterministic stand-in for the `cargo fuzz` targets in `fuzz/`,
//! run with the ordinary tests: the corpus in `fuzz/corpus/`, plus seeded
//! random mutations of it, through the token-response and challenge parsers.
//! None may panic; what they accept must be usable.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use tower_oauth2::challenge;
use tower_oauth2::endpoint::parse_token_response;
use tower_oauth2::token::{IssuedAt, Token};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"=",
    b"&",
    b"%",
    b"%0",
    b"\r\n",
    b"\0",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"\"expires_in\":",
    b"\"access_token\":",
    b"\"error\":",
    b"null",
    b"true",
    b"\xff",
    b"\xe2\x82",
    b"Bearer ",
    b"realm=",
    b"error=\"",
    b"\\\"",
    b" ",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let pos = if v.is_empty() {
            0
        } else {
            rng.below(v.len() + 1)
        };
        match rng.below(5) {
            0 if !v.is_empty() => {
                let end = (pos + rng.below(8)).min(v.len());
                v.drain(pos.min(v.len())..end);
            }
            1 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(pos..pos, ins.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            _ => {
                let chunk: Vec<u8> = v[pos.min(v.len())..].iter().take(16).copied().collect();
                v.splice(pos..pos, chunk);
            }
        }
    }
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "corpus {target} is missing");
    seeds
}

fn token_response(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = [200u16, 201, 302, 400, 401, 429, 500, 502, 503][selector as usize % 9];
    let ct = [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "text/html",
    ][(selector as usize / 9) % 4];
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    let issued = IssuedAt::now();
    match parse_token_response(
        StatusCode::from_u16(status).unwrap(),
        &headers,
        body,
        issued,
    ) {
        Ok(t) => {
            assert!(!t.access_token().expose_secret().is_empty());
            let _ = (t.expires_at(), t.is_expired(), format!("{t:?}"));
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.chars().count() < 1200,
                "error text is bounded: {}",
                shown.len()
            );
            assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown:?}");
            let _ = (format!("{e:?}"), e.is_retryable());
        }
    }
    let _ = Token::from_json(body, issued);
    let _ = Token::from_form(body, issued);
}

fn challenge_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for c in challenge::parse(&text) {
        assert!(!c.scheme().is_empty());
        let _ = (c.param("error"), c.token68());
    }
    let _ = challenge::bearer_error([text.as_ref()]);
}

/// Runs `check` on every seed of the corpus `target`, then on 30,000
/// seeded random mutations of them.
fn survives_mutations(target: &str, seed: u64, check: fn(&[u8])) {
    let seeds = corpus(target);
    let mut rng = Rng(seed);
    for s in &seeds {
        check(s);
    }
    for _ in 0..30_000 {
        let s = &seeds[rng.below(seeds.len())];
        check(&mutate(&mut rng, s));
    }
}

#[test]
fn token_response_parser_survives_mutations() {
    survives_mutations("token_response", 0x5eed_0001, token_response);
}

#[test]
fn challenge_parser_survives_mutations() {
    survives_mutations("challenge", 0x5eed_0002, challenge_header);
}
