//! An error and its causes on one line, for the places that must hand an
//! error on as text (an HTTP message, a health document, a report) rather
//! than as a value whose `source()` a log can follow.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its causes, `": "` between them:
/// `"data-service is unreachable: error sending request …: connection refused"`.
///
/// A cause whose text the message before it already ends with is skipped, so
/// that an error from a library that both names its cause and returns it
/// from `source()` does not print it twice.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.0.to_string();
        formatter.write_str(&previous)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !previous.ends_with(&text) {
                write!(formatter, ": {text}")?;
            }
            previous = text;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the stock file")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach the broker: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn prints_each_cause_once() {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            ErrorChain(&Outer(missing())).to_string(),
            "cannot read the stock file: no such file"
        );
        assert_eq!(
            ErrorChain(&Repeats(missing())).to_string(),
            "cannot reach the broker: no such file"
        );
        assert_eq!(ErrorChain(&missing()).to_string(), "no such file");
    }
}
