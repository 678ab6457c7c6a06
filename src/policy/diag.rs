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

impl Diagnostic {
    pub fn error(at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            at,
            message: message.into(),
        }
    }

    pub fn warning(at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            at,
            message: message.into(),
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
        write!(f, "{}: {level}: {}", self.at, self.message)
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
