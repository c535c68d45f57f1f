//! A secret setting (the admin token, a database URL with its password) that no `Debug` output,
//! log line or panic message prints.

use std::fmt;
use std::ops::Deref;

use serde::Deserialize;

/// A string that formats as `<redacted>`; read it through [`Deref`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's length in characters: enough to check a minimum without showing it.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// Whether a librdkafka property holds a credential (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, ...), so that its value is not printed.
pub fn is_secret_property(name: &str) -> bool {
    [
        "password",
        "secret",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// `properties` with the values of credentials redacted, for `Debug` output.
pub(crate) fn redacted(properties: &[(String, String)]) -> Vec<(&str, &str)> {
    properties
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_property(k) {
                "<redacted>"
            } else {
                v.as_str()
            };
            (k.as_str(), shown)
        })
        .collect()
}
