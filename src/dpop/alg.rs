//! Which algorithm signs the proofs when the user does not say: one the
//! authorization server lists in `dpop_signing_alg_values_supported`
//! (RFC 9449 §5.1).

use crate::jose::{Algorithm, KeyError, KeyErrorKind};

/// The algorithms proofs are signed with in this build, in the order
/// [`choose_algorithm`] prefers them: ES256 first, as every DPoP server
/// and resource server takes it (a resource server's own list, its
/// `algs`, is only learned from a refusal); then Ed25519, under either of
/// its names; then RSA, the slowest to sign and the largest proofs.
pub(super) const SIGNED: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::Ed25519,
    #[cfg(feature = "jwt-rsa")]
    Algorithm::PS256,
    #[cfg(feature = "jwt-rsa")]
    Algorithm::RS256,
];

/// The algorithm to sign proofs with for a server that lists `offered`
/// (its `dpop_signing_alg_values_supported`; `None` when it lists none):
/// the first of ES256, EdDSA, Ed25519, PS256, RS256 (those two with
/// feature `jwt-rsa`) that it lists, or ES256 when it lists nothing.
///
/// A list with none of them is [`KeyErrorKind::NotOffered`], whose message
/// names what the server offers (names only, each at most 16 characters
/// of letters, digits and `-_.`; anything else is left out).
///
/// ```
/// use tower_oauth2::dpop::choose_algorithm;
/// use tower_oauth2::jose::{Algorithm, KeyErrorKind};
///
/// assert_eq!(choose_algorithm(Some(&["EdDSA", "ES256"]))?, Algorithm::ES256);
/// assert_eq!(choose_algorithm(Some(&["Ed25519"]))?, Algorithm::Ed25519);
/// assert_eq!(choose_algorithm(None::<&[&str]>)?, Algorithm::ES256);
/// let err = choose_algorithm(Some(&["ES512"])).unwrap_err();
/// assert_eq!(err.kind(), KeyErrorKind::NotOffered);
/// # Ok::<(), tower_oauth2::jose::KeyError>(())
/// ```
pub fn choose_algorithm<S: AsRef<str>>(offered: Option<&[S]>) -> Result<Algorithm, KeyError> {
    let Some(offered) = offered else {
        return Ok(Algorithm::ES256);
    };
    let listed = |alg: &Algorithm| offered.iter().any(|o| o.as_ref() == alg.as_str());
    SIGNED.iter().copied().find(listed).ok_or_else(|| {
        not_offered(
            offered,
            "none of the algorithms DPoP proofs are signed with here",
        )
    })
}

/// Checks that a server listing `offered` takes proofs signed with `alg`.
pub(crate) fn check_offered<S: AsRef<str>>(
    alg: Algorithm,
    offered: Option<&[S]>,
) -> Result<(), KeyError> {
    match offered {
        Some(offered) if !offered.iter().any(|o| o.as_ref() == alg.as_str()) => Err(not_offered(
            offered,
            &format!("not {alg}, the key's algorithm"),
        )),
        _ => Ok(()),
    }
}

fn not_offered<S: AsRef<str>>(offered: &[S], what: &str) -> KeyError {
    let names: Vec<&str> = offered
        .iter()
        .map(AsRef::as_ref)
        .filter(|name| {
            name.len() <= 16
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .collect();
    let signed: Vec<&str> = SIGNED.iter().map(|a| a.as_str()).collect();
    let rsa = if cfg!(feature = "jwt-rsa") {
        ""
    } else {
        "; RS256 and PS256 need the `jwt-rsa` feature"
    };
    KeyError::new(
        KeyErrorKind::NotOffered,
        format!(
            "the server's dpop_signing_alg_values_supported [{}] has {what} ({}{rsa})",
            names.join(", "),
            signed.join(", ")
        ),
    )
}
