//! [`BodyEncoding`]: how a token request's parameters become its body.

use bytes::Bytes;
use serde_json::map::Entry;
use serde_json::{Map, Value};

use crate::error::Error;

pub(super) const FORM: &str = "application/x-www-form-urlencoded";
pub(super) const JSON: &str = "application/json";

/// How the request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BodyEncoding {
    /// `application/x-www-form-urlencoded`, as RFC 6749 requires.
    #[default]
    Form,
    /// A JSON object, for the few servers that take only that. Each
    /// parameter is a string; one sent several times (RFC 8707 allows
    /// several `resource`s) is an array of its values, in order.
    Json,
}

impl BodyEncoding {
    /// The `Content-Type` and the body of `params`, which are sent in order.
    pub(crate) fn encode(self, params: &[(&str, &str)]) -> Result<(&'static str, Bytes), Error> {
        match self {
            BodyEncoding::Form => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.extend_pairs(params);
                Ok((FORM, form.finish().into()))
            }
            BodyEncoding::Json => {
                let body = serde_json::to_vec(&json_object(params))
                    .map_err(|e| Error::invalid_request(format!("cannot encode JSON ({e})")))?;
                Ok((JSON, body.into()))
            }
        }
    }
}

/// A JSON object of `params`: a name given once maps to its value, a name
/// given several times to the array of its values.
fn json_object(params: &[(&str, &str)]) -> Map<String, Value> {
    let mut object = Map::new();
    for &(name, value) in params {
        match object.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(value.into());
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Value::Array(values) => values.push(value.into()),
                first => *first = Value::Array(vec![first.take(), value.into()]),
            },
        }
    }
    object
}
