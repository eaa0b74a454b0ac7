//! [`Cause`]: an error's description, with the underlying error when there is one.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// What went wrong, as text, and the underlying error where there is one (the I/O error of a
/// refused connect, the TLS, protocol or serde_json error), which
/// [`Error::source`](std::error::Error::source) returns. It reads as its text: it derefs to
/// `str`, displays as it, and compares equal by it (two causes with the same text are equal,
/// whatever their sources).
///
/// ```
/// use std::error::Error as _;
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let error = resocket::Error::Connect(resocket::Cause::from_error(io));
/// let source = error.source().and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert_eq!(source.map(|io| io.kind()), Some(std::io::ErrorKind::ConnectionRefused));
/// assert!(error.to_string().contains("refused"));
/// ```
#[derive(Clone)]
pub struct Cause {
    text: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause that is only text.
    pub fn new(text: impl Into<String>) -> Self {
        Cause {
            text: text.into(),
            source: None,
        }
    }

    /// A cause described by `error`, which [`source`](std::error::Error::source) returns.
    pub fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause {
            text: error.to_string(),
            source: Some(Arc::new(error)),
        }
    }

    /// `text` describes it; `error` is the underlying error.
    pub fn with_source(
        text: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Cause {
            text: text.into(),
            source: Some(Arc::new(error)),
        }
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The underlying error, if there is one.
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Deref for Cause {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Cause {}

impl PartialEq<str> for Cause {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Cause {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Self {
        Cause::new(text)
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Self {
        Cause::new(text)
    }
}
