//! `serde::Deserialize` for [`ClientConfig`]: a configuration file's map
//! read as the variables would be.

use std::collections::BTreeMap;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::Value;

use super::ClientConfig;

/// Each setting and the variable it stands for.
const SETTINGS: [(&str, &str); 19] = [
    ("token_url", "OAUTH2_TOKEN_URL"),
    ("issuer", "OAUTH2_ISSUER"),
    ("client_id", "OAUTH2_CLIENT_ID"),
    ("auth", "OAUTH2_AUTH"),
    ("client_secret", "OAUTH2_CLIENT_SECRET"),
    ("client_secret_file", "OAUTH2_CLIENT_SECRET_FILE"),
    ("client_assertion_file", "OAUTH2_CLIENT_ASSERTION_FILE"),
    ("key_file", "OAUTH2_KEY_FILE"),
    ("key_alg", "OAUTH2_KEY_ALG"),
    ("key_id", "OAUTH2_KEY_ID"),
    ("dpop_key_file", "OAUTH2_DPOP_KEY_FILE"),
    ("scope", "OAUTH2_SCOPE"),
    ("audience", "OAUTH2_AUDIENCE"),
    ("resource", "OAUTH2_RESOURCE"),
    ("timeout", "OAUTH2_TIMEOUT"),
    ("redis_url", "OAUTH2_REDIS_URL"),
    ("redis_key", "OAUTH2_REDIS_KEY"),
    ("redis_lease", "OAUTH2_REDIS_LEASE"),
    ("redis_timeout", "OAUTH2_REDIS_TIMEOUT"),
];

impl<'de> Deserialize<'de> for ClientConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Value>::deserialize(deserializer)?;
        let mut vars = BTreeMap::new();
        for (key, value) in map {
            let Some((_, variable)) = SETTINGS.iter().find(|(setting, _)| *setting == key) else {
                let known: Vec<&str> = SETTINGS.iter().map(|(s, _)| *s).collect();
                return Err(D::Error::custom(format!(
                    "unknown setting `{key}`; expected one of {}",
                    known.join(", ")
                )));
            };
            // Never the value in an error: it may be a secret.
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Array(items) => {
                    let words: Option<Vec<String>> = items
                        .into_iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect();
                    words
                        .ok_or_else(|| {
                            D::Error::custom(format!("`{key}`: expected a list of strings"))
                        })?
                        .join(" ")
                }
                Value::Null => continue,
                _ => {
                    return Err(D::Error::custom(format!(
                        "`{key}`: expected a string, a number or a list of strings"
                    )))
                }
            };
            vars.insert(*variable, text);
        }
        ClientConfig::from_vars(|name| vars.get(name).cloned()).map_err(|e| {
            let setting = SETTINGS
                .iter()
                .find(|(_, v)| *v == e.variable())
                .map_or("", |(s, _)| s);
            D::Error::custom(format!("`{setting}` ({e})"))
        })
    }
}
