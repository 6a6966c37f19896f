//! Who may publish a stream, and who may pull VAN frames.
//!
//! - [`SourceCredentials`], from `--source-credentials FILE`: lines `user:password` (may publish
//!   any stream) or `user:password:stream-prefix` (only streams whose name starts with the
//!   prefix), so that a publisher can be limited to its own streams. The prefix is a plain
//!   string prefix, not a path segment (`mal` also allows `mallard-news`): operators end it with
//!   a separator (`mal-`) to grant a family of names. A user may have several
//!   lines, e.g. one per prefix. Passwords cannot hold `:`.
//! - [`VanTokens`], from `--van-token-file FILE`: one bearer token per line, for
//!   `GET /van/{stream}` (child proxies and VAN-aware clients).
//!
//! In both files blank lines and lines starting with `#` are ignored and surrounding whitespace
//! is trimmed. Parse errors name the line (and the file, from `load`), never the secret on it.
//!
//! Secrets are compared in constant time and every entry is compared on every check, so the
//! time an answer takes tells a guesser nothing about which user exists or how much of a
//! password was right. Debug output never shows a secret.

use crate::http::is_stream_name_byte;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: &'static str },
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<CredentialsError>,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct SourceEntry {
    user: String,
    password: String,
    /// Empty: every stream.
    prefix: String,
}

/// The sources allowed to publish, and where.
#[derive(Default)]
pub struct SourceCredentials {
    entries: Vec<SourceEntry>,
}

impl fmt::Debug for SourceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{}:***:{}", e.user, e.prefix)),
            )
            .finish()
    }
}

impl SourceCredentials {
    /// Parses the text of a credentials file.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let mut entries = Vec::new();
        for (line, content) in meaningful_lines(text) {
            let syntax = |reason| CredentialsError::Syntax { line, reason };
            let mut fields = content.split(':');
            let user = fields.next().unwrap_or_default();
            let password = fields
                .next()
                .ok_or_else(|| syntax("expected user:password or user:password:stream-prefix"))?;
            let prefix = fields.next().unwrap_or_default();
            if fields.next().is_some() {
                return Err(syntax(
                    "too many ':' (fields are user:password[:stream-prefix]; passwords cannot hold ':')",
                ));
            }
            if user.is_empty() {
                return Err(syntax("empty user name"));
            }
            if password.is_empty() {
                return Err(syntax("empty password"));
            }
            if !prefix.bytes().all(is_stream_name_byte) {
                return Err(syntax(
                    "stream prefix may hold only A-Z a-z 0-9 . _ ~ - (as stream names do)",
                ));
            }
            entries.push(SourceEntry {
                user: user.to_owned(),
                password: password.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Ok(Self { entries })
    }

    /// Reads and parses a credentials file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        Self::parse(&read(path)?).map_err(|e| in_file(path, e))
    }

    /// True if `basic` (user, password from `Authorization: Basic`) may publish `stream`.
    pub fn allows(&self, basic: Option<(&str, &str)>, stream: &str) -> bool {
        let Some((user, password)) = basic else {
            return false;
        };
        // No early exit: every entry costs the same whether or not it matches.
        let mut allowed = false;
        for entry in &self.entries {
            let matched = constant_time_eq(entry.user.as_bytes(), user.as_bytes())
                & constant_time_eq(entry.password.as_bytes(), password.as_bytes())
                & stream.starts_with(entry.prefix.as_str());
            allowed |= matched;
        }
        allowed
    }

    /// Number of credential lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The bearer tokens that may pull VAN frames.
#[derive(Default)]
pub struct VanTokens {
    tokens: Vec<String>,
}

impl fmt::Debug for VanTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VanTokens({} tokens)", self.tokens.len())
    }
}

impl VanTokens {
    /// Parses the text of a token file: one token per line.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let mut tokens = Vec::new();
        for (line, content) in meaningful_lines(text) {
            if content
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(CredentialsError::Syntax {
                    line,
                    reason: "a token may not hold whitespace or control characters",
                });
            }
            tokens.push(content.to_owned());
        }
        Ok(Self { tokens })
    }

    /// Reads and parses a token file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        Self::parse(&read(path)?).map_err(|e| in_file(path, e))
    }

    /// True if `bearer` (from `Authorization: Bearer`) is one of the tokens.
    pub fn allows(&self, bearer: Option<&str>) -> bool {
        let Some(bearer) = bearer else {
            return false;
        };
        let mut allowed = false;
        for token in &self.tokens {
            allowed |= constant_time_eq(token.as_bytes(), bearer.as_bytes());
        }
        allowed
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The token this relay presents to its own parents when it pulls (the first of the file).
    pub fn first(&self) -> Option<&str> {
        self.tokens.first().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// (1-based line number, trimmed content) of every line that is not blank or a comment.
fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn in_file(path: &Path, e: CredentialsError) -> CredentialsError {
    CredentialsError::InFile {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

/// Compares two byte strings in time that depends on their lengths only, never on where they
/// differ. `black_box` keeps the optimiser from turning the fold
/// into an early-exit comparison.
fn constant_time_eq(secret: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != given.len());
    for i in 0..secret.len().max(given.len()) {
        let a = secret.get(i).copied().unwrap_or(0);
        let b = given.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(a ^ b);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FILE: &str = "# sources of the studio\nstudio:s3cret\n  news:pw-news:news-   \n\n\
                        news:pw-sport:sport.\n";

    #[test]
    fn sources_are_checked_by_user_password_and_prefix() {
        let creds = SourceCredentials::parse(FILE).unwrap();
        assert_eq!(creds.len(), 3);
        assert!(creds.allows(Some(("studio", "s3cret")), "anything"));
        assert!(!creds.allows(Some(("studio", "s3cre")), "anything"));
        assert!(!creds.allows(Some(("studio", "s3cret ")), "anything"));
        assert!(!creds.allows(Some(("Studio", "s3cret")), "anything"));
        assert!(!creds.allows(None, "anything"));
        assert!(creds.allows(Some(("news", "pw-news")), "news-1"));
        assert!(creds.allows(Some(("news", "pw-news")), "news-"));
        assert!(!creds.allows(Some(("news", "pw-news")), "sport.1"));
        assert!(creds.allows(Some(("news", "pw-sport")), "sport.1"));
        assert!(!creds.allows(Some(("news", "pw-sport")), "news-1"));
        assert!(!creds.allows(Some(("", "")), ""));
    }

    #[test]
    fn empty_file_allows_nobody() {
        let creds = SourceCredentials::parse("# nobody yet\n\n").unwrap();
        assert!(creds.is_empty());
        assert!(!creds.allows(Some(("a", "b")), "s"));
    }

    #[test]
    fn bad_lines_are_named_without_their_secret() {
        let cases = [
            ("ok:pw\nnocolon\n", 2),
            ("a:b:c:d", 1),
            (":pw", 1),
            ("\n\nuser:", 3),
            ("u:p:bad/prefix", 1),
        ];
        for (text, line) in cases {
            let err = SourceCredentials::parse(text).unwrap_err();
            match &err {
                CredentialsError::Syntax { line: l, .. } => assert_eq!(*l, line, "{text:?}"),
                other => panic!("{other:?}"),
            }
            assert!(err.to_string().starts_with(&format!("line {line}: ")));
        }
        let err = SourceCredentials::parse("user:secretpw:bad/x").unwrap_err();
        assert!(!err.to_string().contains("secretpw"));
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("van-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("sources");
        std::fs::write(&good, "a:b\n").unwrap();
        assert!(
            SourceCredentials::load(&good)
                .unwrap()
                .allows(Some(("a", "b")), "s")
        );
        let bad = dir.join("tokens");
        std::fs::write(&bad, "ok\nnot ok\n").unwrap();
        let err = VanTokens::load(&bad).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: line 2: a token may not hold whitespace or control characters",
                bad.display()
            )
        );
        let missing = dir.join("missing");
        let err = SourceCredentials::load(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read {}: ", missing.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn van_tokens() {
        let tokens = VanTokens::parse("# child proxies\n tok-1 \nTok2\n").unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.allows(Some("tok-1")));
        assert!(tokens.allows(Some("Tok2")));
        assert!(!tokens.allows(Some("tok2")));
        assert!(!tokens.allows(Some("tok-")));
        assert!(!tokens.allows(Some("")));
        assert!(!tokens.allows(None));
        assert!(!VanTokens::parse("").unwrap().allows(Some("")));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let creds = SourceCredentials::parse("alice:hunter2:a-").unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("alice") && !shown.contains("hunter2"));
        let tokens = VanTokens::parse("hunter2").unwrap();
        assert!(!format!("{tokens:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn constant_time_eq_is_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                        b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            prop_assert!(constant_time_eq(&a, &a));
        }

        /// Any user and password written to a file is allowed back, on every stream with the
        /// prefix, and nowhere else.
        #[test]
        fn written_credentials_are_allowed(user in "[a-z0-9_]{1,12}", password in "[!-9;-~]{1,20}",
                                           prefix in "[a-z.-]{0,6}", stream in "[a-z.-]{0,10}") {
            let creds = SourceCredentials::parse(&format!("{user}:{password}:{prefix}\n")).unwrap();
            prop_assert_eq!(creds.allows(Some((&user, &password)), &stream), stream.starts_with(&prefix));
            let wrong = format!("{password}x");
            prop_assert!(!creds.allows(Some((&user, &wrong)), &stream));
        }
    }
}
