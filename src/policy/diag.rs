//! Diagnostics: what is wrong, where (file:line:column), and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A place in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub fn new(file: &Arc<Path>, line: u32, column: u32) -> Location {
        Location {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// The place of a value read from YAML (0:0 when the parser lost it).
    pub fn of(file: &Arc<Path>, loc: &serde_saphyr::Location) -> Location {
        Location::new(file, loc.line() as u32, loc.column() as u32)
    }

    /// A whole file, for errors that have no line.
    pub fn file(file: &Arc<Path>) -> Location {
        Location::new(file, 0, 0)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.file.display()),
            _ => write!(f, "{}:{}:{}", self.file.display(), self.line, self.column),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub at: Location,
    pub message: String,
}

/// Longest quoted value a message shows whole.
const QUOTED: usize = 60;

/// Longest message shown whole.
const LONGEST: usize = 600;

/// `message` with every value it quotes ('…' or `…`) longer than
/// [`QUOTED`] characters cut to an excerpt, as any unquoted word that long,
/// and at most [`LONGEST`] characters in all: an error about a 50 MB value
/// says what is wrong, not the value (which may hold quotes itself).
fn excerpts(message: String) -> String {
    if message.chars().count() <= 2 * QUOTED {
        return message;
    }
    let mut quoted = String::with_capacity(QUOTED * 4);
    let mut rest = message.as_str();
    while let Some(open) = rest.find(['\'', '`']) {
        let quote = rest[open..].chars().next().expect("found");
        quoted.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(quote) {
            Some(close) => {
                let inner = &after[..close];
                if inner.chars().count() > QUOTED {
                    quoted.push_str(&super::file::excerpt(inner));
                } else {
                    quoted.push_str(inner);
                }
                quoted.push(quote);
                rest = &after[close + 1..];
            }
            None => rest = after,
        }
    }
    quoted.push_str(rest);
    let words: Vec<String> = quoted
        .split(' ')
        .map(|w| {
            // Past an excerpt's own length: not one already.
            if w.chars().count() > 2 * QUOTED {
                super::file::excerpt(w)
            } else {
                w.to_string()
            }
        })
        .collect();
    let text = words.join(" ");
    if text.chars().count() <= LONGEST {
        return text;
    }
    let cut: String = text.chars().take(LONGEST).collect();
    format!("{cut}… (message cut at {LONGEST} characters)")
}

impl Diagnostic {
    pub fn error(at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            at,
            message: excerpts(message.into()),
        }
    }

    pub fn warning(at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            at,
            message: excerpts(message.into()),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        // Messages quote what policies and the host say: shown, not obeyed.
        write!(
            f,
            "{}: {level}: {}",
            crate::escape::escape(&self.at.to_string()),
            crate::escape::escape(&self.message)
        )
    }
}

/// Every diagnostic of a failed load, errors first; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn errors(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The path as given, for messages.
pub fn shown(path: &Path) -> Arc<Path> {
    Arc::from(PathBuf::from(path).as_path())
}
