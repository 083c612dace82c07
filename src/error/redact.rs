//! Keeping hostile or secret text out of errors and logs.

/// Keeps at most `max` characters, with control characters turned into
/// spaces and runs of white space folded, so a hostile server cannot forge
/// log lines or flood them.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 3));
    let mut last_space = false;
    let mut n = 0;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if n == max {
            out.push('…');
            break;
        }
        out.push(c);
        n += 1;
    }
    out.trim().to_owned()
}

/// A short, printable excerpt of a response body with every `secret` (and its
/// form-urlencoded spelling) replaced by `[redacted]`.
pub(crate) fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    // Redact the whole (size-limited) body first, then cut: a secret that
    // straddles the cut would otherwise escape as a prefix.
    sanitize(
        &redact(String::from_utf8_lossy(body).into_owned(), secrets),
        200,
    )
}

/// `text` with every `secret` (and its form-urlencoded spelling) replaced by
/// `[redacted]`: a server that echoes what it was sent cannot make an error
/// message carry a secret.
pub(crate) fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(secret) {
            text = text.replace(secret, "[redacted]");
        }
        let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        if encoded != *secret && text.contains(&encoded) {
            text = text.replace(&encoded, "[redacted]");
        }
    }
    text
}
