//! The policy file as written: YAML, read with serde-saphyr so that every
//! value keeps its line and column. Nothing here is checked beyond its shape;
//! meaning is given in `policy::check`.
//!
//! Hand-written visitors (not `#[serde(untagged)]`) keep the source locations
//! of values that may be written in several forms.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Option<Spanned<Text>>,
    #[serde(default)]
    pub protect: Option<RawProtect>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtect {
    #[serde(default)]
    pub pids: Vec<Spanned<Scalar>>,
    #[serde(default)]
    pub executables: Vec<Spanned<Text>>,
    #[serde(default)]
    pub cgroups: Vec<Spanned<Text>>,
}

/// `sample: {frequency: 99, event: cpu-clock}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSample {
    pub frequency: Spanned<Scalar>,
    #[serde(default)]
    pub event: Option<Spanned<Text>>,
}

/// `rate: {over: 50, per: 1s, by: session}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub over: Spanned<Scalar>,
    pub per: Spanned<Scalar>,
    #[serde(default)]
    pub by: Option<Spanned<Text>>,
}

/// `disarm: {distinct: 3, per: 1m, by: executable}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisarm {
    pub distinct: Spanned<Scalar>,
    pub per: Spanned<Scalar>,
    #[serde(default)]
    pub by: Option<Spanned<Text>>,
}

/// Whom a signal goes to: `parent`, `{pid: N}` or `{pidfile: PATH}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawTo {
    Parent,
    Pid(Scalar),
    Pidfile(String),
}

struct ToVisitor;

impl<'de> Visitor<'de> for ToVisitor {
    type Value = RawTo;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`parent`, {pid: N} or {pidfile: PATH}")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTo, E> {
        match v {
            "parent" => Ok(RawTo::Parent),
            other => Err(E::custom(format!(
                "unknown target '{other}': use `parent`, {{pid: N}} or {{pidfile: PATH}}"
            ))),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTo, A::Error> {
        let to = match map.next_key::<String>()?.as_deref() {
            Some("pid") => RawTo::Pid(map.next_value()?),
            Some("pidfile") => RawTo::Pidfile(map.next_value::<Text>()?.0),
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "unknown key `{other}` in `to`: expected pid or pidfile"
                )));
            }
            None => return Err(de::Error::custom("`to` needs {pid: N} or {pidfile: PATH}")),
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(
                "`to` names one process: {pid: N} or {pidfile: PATH}",
            ));
        }
        Ok(to)
    }
}

impl<'de> Deserialize<'de> for RawTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawTo, D::Error> {
        d.deserialize_any(ToVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<Text>,
    /// A sampling trigger: a software perf event at a frequency.
    #[serde(default)]
    pub sample: Option<Spanned<RawSample>>,
    /// Exit rules: the syscall took longer than this (`200ms`, `1s`).
    #[serde(default)]
    pub slower_than: Option<Spanned<Scalar>>,
    /// Exit rules: the syscall returned one of these (`-EACCES`, `0`, …).
    #[serde(default)]
    pub returns: Option<Spanned<Values>>,
    /// Act only past this many matching calls in a window, per group.
    #[serde(default)]
    pub rate: Option<Spanned<RawRate>>,
    /// A circuit breaker: past N distinct things acted on, audit instead.
    #[serde(default)]
    pub disarm: Option<Spanned<RawDisarm>>,
    /// A syscall trigger: `syscall: NAME` or a list (exactly one of
    /// `syscall` and `hook`).
    #[serde(default)]
    pub syscall: Option<Spanned<Names>>,
    /// A security hook trigger: `hook: ptrace | exec | open | kill | module`.
    #[serde(default)]
    pub hook: Option<Spanned<Text>>,
    #[serde(default)]
    pub args: Option<Pairs<Spanned<String>, Spanned<RawArg>>>,
    #[serde(default, rename = "match")]
    pub selectors: Option<RawMatch>,
    pub action: Spanned<RawAction>,
    /// Where BPF-LSM is refused: the signal to send at the entry of the
    /// hook's syscalls instead.
    #[serde(default)]
    pub fallback: Option<Spanned<RawAction>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub pid: Option<Spanned<Values>>,
    pub ppid: Option<Spanned<Values>>,
    pub uid: Option<Spanned<Values>>,
    pub gid: Option<Spanned<Values>>,
    pub comm: Option<Spanned<Values>>,
    pub executable: Option<Spanned<Values>>,
    pub parent_executable: Option<Spanned<Values>>,
    pub cgroup: Option<Spanned<Values>>,
    pub ancestor: Option<Spanned<RawAncestor>>,
}

/// `ancestor:` as written: pids (`1234`, `[1, 2]`, `{not: ...}`), or
/// `{executable: PATHS}` (the same forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAncestor {
    Pids(Values),
    Executables(Values),
}

impl<'de> Deserialize<'de> for RawAncestor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawAncestor, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAncestor;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a pid, a list of pids, {not: ...} or {executable: PATHS}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAncestor, E> {
                ValuesVisitor { negated: false }
                    .visit_i64(v)
                    .map(RawAncestor::Pids)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAncestor, E> {
                ValuesVisitor { negated: false }
                    .visit_u64(v)
                    .map(RawAncestor::Pids)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAncestor, E> {
                ValuesVisitor { negated: false }
                    .visit_str(v)
                    .map(RawAncestor::Pids)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawAncestor, A::Error> {
                ValuesVisitor { negated: false }
                    .visit_seq(seq)
                    .map(RawAncestor::Pids)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAncestor, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| {
                    de::Error::custom("empty map: expected {not: ...} or {executable: PATHS}")
                })?;
                let out = match key.as_str() {
                    "not" => RawAncestor::Pids(map.next_value_seed(ValuesSeed { negated: true })?),
                    "executable" => RawAncestor::Executables(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown key `{other}`: `ancestor` is a pid, a list of pids, \
                             {{not: ...}} or {{executable: PATHS}}"
                        )));
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "`ancestor` takes one key: {not: ...} or {executable: PATHS}",
                    ));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// A number or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Int(i128),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Str(s) => write!(f, "{s}"),
        }
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a name")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
        i128::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom("number too large"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Err(E::custom(not_whole(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        scalar(v).map_err(E::custom)
    }
}

/// A string scalar, its `${…}` expanded: a number where an expansion made it
/// one (as a plain scalar would be), else a name.
fn scalar(v: &str) -> Result<Scalar, String> {
    let expanded = expand(v)?;
    if expanded.as_str() != v {
        if let Ok(n) = expanded.trim().parse::<i128>() {
            return Ok(Scalar::Int(n));
        }
    }
    Ok(Scalar::Str(expanded))
}

/// What a number YAML read as floating point is not.
fn not_whole(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() >= 1e18 {
        format!("{v:.0} is too large: numbers here are at most 18446744073709551615")
    } else {
        format!("{v} is not a whole number")
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A string value, with `${NAME}`, `${NAME:-default}` and `${NAME-default}`
/// filled from reflex's environment, whether the scalar is plain or quoted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                expand(v).map(Text).map_err(E::custom)
            }
        }
        d.deserialize_string(V)
    }
}

/// Longest value a `${…}` expansion may make.
const MAX_EXPANDED: usize = 4096;

/// `text` with every `${NAME}`, `${NAME:-default}` (the default when NAME is
/// unset or empty) and `${NAME-default}` (when unset) filled from the
/// environment. The parser fills plain scalars the same way before reflex
/// sees them; this fills what it leaves, quoted scalars. An unset NAME
/// without a default is an error.
pub fn expand(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let inner = &rest[at + 2..];
        let Some(end) = inner.find('}') else {
            return Err(format!(
                "'{}' opens a `${{` it does not close: write ${{NAME}} or ${{NAME:-default}}",
                excerpt(text)
            ));
        };
        let body = &inner[..end];
        let (name, default, or_empty) = match body.find([':', '-']) {
            Some(i) if body[i..].starts_with(":-") => (&body[..i], Some(&body[i + 2..]), true),
            Some(i) if body[i..].starts_with('-') => (&body[..i], Some(&body[i + 1..]), false),
            Some(_) => {
                return Err(format!(
                    "'${{{}}}': reflex fills ${{NAME}}, ${{NAME:-default}} and ${{NAME-default}}",
                    excerpt(body)
                ));
            }
            None => (body, None, false),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "'${{{}}}' is not a variable name: letters, digits and _, not starting with a digit",
                excerpt(body)
            ));
        }
        let value = std::env::var(name).ok();
        let filled = match (value, default) {
            (Some(v), Some(d)) if or_empty && v.is_empty() => d.to_string(),
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(format!(
                    "${{{name}}} is not set in reflex's environment: set it, or give a default \
                     (${{{name}:-default}})"
                ));
            }
        };
        out.push_str(&filled);
        if out.len() > MAX_EXPANDED {
            return Err(format!(
                "'{}' expands to more than {MAX_EXPANDED} bytes",
                excerpt(text)
            ));
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// At most 60 characters of a value, for messages, with what was left out
/// said; control characters escaped.
pub fn excerpt(value: &str) -> String {
    const SHOWN: usize = 60;
    let n = value.chars().count();
    let head: String = value.chars().take(SHOWN).collect();
    let head = crate::escape::escape(&head).into_owned();
    if n > SHOWN {
        format!("{head}… ({n} characters)")
    } else {
        head
    }
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

fn seq_of<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<Spanned<Scalar>>, A::Error> {
    let mut items = Vec::new();
    while let Some(item) = seq.next_element::<Spanned<Scalar>>()? {
        items.push(item);
    }
    Ok(items)
}

/// `value`, `[value, ...]`, or `{not: value | [value, ...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    pub negate: bool,
    /// A lone scalar has no location of its own: use the field's.
    pub items: Vec<Spanned<Scalar>>,
}

struct ValuesVisitor {
    /// Inside a `not:` already.
    negated: bool,
}

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = Values;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.negated {
            f.write_str("a value or a list of values")
        } else {
            f.write_str("a value, a list of values, or {not: ...}")
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
        self.one(Scalar::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
        self.one(Scalar::Int(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Values, E> {
        Err(E::custom(not_whole(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
        self.one(scalar(v).map_err(E::custom)?)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Values, A::Error> {
        Ok(Values {
            negate: self.negated,
            items: seq_of(seq)?,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
        if self.negated {
            return Err(de::Error::custom("`not` cannot hold another map"));
        }
        let key: String = map
            .next_key()?
            .ok_or_else(|| de::Error::custom("empty map: expected {not: ...}"))?;
        if key != "not" {
            return Err(de::Error::custom(format!(
                "unknown key `{key}`: a selector is a value, a list, or {{not: ...}}"
            )));
        }
        let values = map.next_value_seed(ValuesSeed { negated: true })?;
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom("{not: ...} takes exactly one key"));
        }
        Ok(values)
    }
}

impl ValuesVisitor {
    fn one<E>(self, s: Scalar) -> Result<Values, E> {
        Ok(Values {
            negate: self.negated,
            items: vec![unspanned(s)],
        })
    }
}

struct ValuesSeed {
    negated: bool,
}

impl<'de> de::DeserializeSeed<'de> for ValuesSeed {
    type Value = Values;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Values, D::Error> {
        d.deserialize_any(ValuesVisitor {
            negated: self.negated,
        })
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Values, D::Error> {
        d.deserialize_any(ValuesVisitor { negated: false })
    }
}

/// An argument matcher as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawArg {
    /// `9`, `[1, 2]`, `{not: ...}`
    Values(Values),
    /// `{any_bits: X}`, `{all_bits: X}`, `{no_bits: X}`; a list is ORed.
    Bits {
        kind: BitsKind,
        items: Vec<Spanned<Scalar>>,
    },
    /// `{range: [lo, hi]}` or `{outside: [lo, hi]}`, inclusive.
    Range {
        outside: bool,
        bounds: Vec<Spanned<Scalar>>,
    },
    /// `protected` or `{not: protected}`: the argument is a pid of a
    /// process in the protected set.
    Protected { negate: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitsKind {
    Any,
    All,
    None,
}

pub const ARG_FORMS: &str = "a value, a list, protected, or a map with one of: not, any_bits, all_bits, no_bits, range, outside";

struct RawArgVisitor;

impl<'de> Visitor<'de> for RawArgVisitor {
    type Value = RawArg;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(ARG_FORMS)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawArg, E> {
        ValuesVisitor { negated: false }
            .visit_i64(v)
            .map(RawArg::Values)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawArg, E> {
        ValuesVisitor { negated: false }
            .visit_u64(v)
            .map(RawArg::Values)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawArg, E> {
        Err(E::custom(not_whole(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawArg, E> {
        if v == "protected" {
            return Ok(RawArg::Protected { negate: false });
        }
        ValuesVisitor { negated: false }
            .visit_str(v)
            .map(RawArg::Values)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawArg, A::Error> {
        ValuesVisitor { negated: false }
            .visit_seq(seq)
            .map(RawArg::Values)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawArg, A::Error> {
        let key: String = map
            .next_key()?
            .ok_or_else(|| de::Error::custom(format!("empty map: expected {ARG_FORMS}")))?;
        let arg = match key.as_str() {
            "not" => match map.next_value::<NotArg>()? {
                NotArg::Protected => RawArg::Protected { negate: true },
                NotArg::Values(items) => RawArg::Values(Values {
                    negate: true,
                    items,
                }),
            },
            "any_bits" | "all_bits" | "no_bits" => RawArg::Bits {
                kind: match key.as_str() {
                    "any_bits" => BitsKind::Any,
                    "all_bits" => BitsKind::All,
                    _ => BitsKind::None,
                },
                items: map.next_value::<Values>()?.items,
            },
            "range" | "outside" => RawArg::Range {
                outside: key == "outside",
                bounds: map.next_value::<Values>()?.items,
            },
            other => {
                return Err(de::Error::custom(format!(
                    "unknown argument matcher `{other}`: expected {ARG_FORMS}"
                )));
            }
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(
                "an argument matcher map takes exactly one key",
            ));
        }
        Ok(arg)
    }
}

impl<'de> Deserialize<'de> for RawArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawArg, D::Error> {
        d.deserialize_any(RawArgVisitor)
    }
}

/// What `not:` holds in an argument matcher.
enum NotArg {
    Protected,
    Values(Vec<Spanned<Scalar>>),
}

impl<'de> Deserialize<'de> for NotArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NotArg, D::Error> {
        let values = d.deserialize_any(ValuesVisitor { negated: true })?;
        Ok(match values.items.as_slice() {
            [one] if one.value == Scalar::Str("protected".into()) => NotArg::Protected,
            _ => NotArg::Values(values.items),
        })
    }
}

/// `name` or `[name, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names(pub Vec<Spanned<Text>>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(vec![unspanned(Text(expand(v).map_err(E::custom)?))]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<Spanned<Text>>()? {
                    names.push(n);
                }
                Ok(Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a rule does, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAction {
    Kill,
    Audit,
    Signal {
        signal: Spanned<Scalar>,
        thread: bool,
        /// Signal another task instead: `parent`, `{pid: N}`, `{pidfile: P}`.
        to: Option<Spanned<RawTo>>,
        /// si_value for another task: a number, or `pid` (the caller's).
        value: Option<Spanned<Scalar>>,
        /// `{pause: 10s}`: SIGSTOP now, SIGCONT after the duration.
        pause: Option<Spanned<Scalar>>,
    },
    /// `deny`, `{deny: EACCES}`, `{deny: EPERM, signal: SIGKILL}`
    Deny {
        error: Option<Spanned<Scalar>>,
        signal: Option<Spanned<Scalar>>,
        thread: bool,
    },
}

pub const ACTION_FORMS: &str =
    "kill, audit, deny, {signal: NAME, thread: true|false}, or {deny: ERRNO, signal: NAME}";

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawAction, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(ACTION_FORMS)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAction, E> {
                match v {
                    "kill" => Ok(RawAction::Kill),
                    "audit" => Ok(RawAction::Audit),
                    "deny" => Ok(RawAction::Deny {
                        error: None,
                        signal: None,
                        thread: false,
                    }),
                    other => {
                        let hint =
                            crate::suggest::closest(other, ["kill", "audit", "deny", "signal"])
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default();
                        Err(E::custom(format!(
                            "unknown action `{other}`{hint}: expected {ACTION_FORMS}"
                        )))
                    }
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAction, A::Error> {
                let mut signal = None;
                let mut deny = None;
                let mut thread = false;
                let (mut to, mut value, mut pause) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "signal" => signal = Some(map.next_value::<Spanned<Scalar>>()?),
                        "deny" => deny = Some(map.next_value::<Spanned<Scalar>>()?),
                        "thread" => thread = map.next_value::<bool>()?,
                        "to" => to = Some(map.next_value::<Spanned<RawTo>>()?),
                        "value" => value = Some(map.next_value::<Spanned<Scalar>>()?),
                        "pause" => pause = Some(map.next_value::<Spanned<Scalar>>()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in action: expected signal, deny, thread, to, value, pause"
                            )));
                        }
                    }
                }
                if deny.is_some() && (to.is_some() || value.is_some() || pause.is_some()) {
                    return Err(de::Error::custom(
                        "a deny signals the caller only: `to`, `value` and `pause` go with `signal:`",
                    ));
                }
                // `{pause: 10s}` alone: SIGSTOP now, SIGCONT later.
                if signal.is_none() && deny.is_none() {
                    if let Some(p) = &pause {
                        signal = Some(Spanned::new(
                            Scalar::Str("SIGSTOP".into()),
                            p.referenced,
                            p.defined,
                        ));
                    }
                }
                match (deny, signal) {
                    (Some(error), signal) => Ok(RawAction::Deny {
                        error: Some(error),
                        signal,
                        thread,
                    }),
                    (None, Some(signal)) => Ok(RawAction::Signal {
                        signal,
                        thread,
                        to,
                        value,
                        pause,
                    }),
                    (None, None) => Err(de::Error::custom(
                        "an action map needs `signal:`, `deny:` or `pause:` (e.g. {signal: SIGSTOP}, {deny: EPERM}, {pause: 10s})",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML map read in order, keeping keys' locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pairs<K, V>, D::Error> {
        struct PV<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for PV<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<K, V>, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<K, V>()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PV(PhantomData))
    }
}

/// Parses one file's text. `${NAME}` and `${NAME:-default}` in values are
/// filled from the environment; an unset `${NAME}` without default is an error.
pub fn parse(text: &str) -> Result<RawFile, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default().with_properties(std::env::vars().collect());
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_nodes = MAX_NODES;
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options)
}

/// Most YAML nodes a policy file may have: a thousand rules take about
/// fifteen thousand.
pub const MAX_NODES: usize = 50_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> RawRule {
        let text = format!("rules:\n  - name: r\n    syscall: ptrace\n    action: kill\n{yaml}");
        parse(&text).unwrap().rules.remove(0)
    }

    #[test]
    fn values_in_every_form_keep_their_place() {
        let r =
            rule("    match:\n      uid: [1000, 1001]\n      comm: {not: [sshd]}\n      gid: 5\n");
        let m = r.selectors.unwrap();
        let uid = m.uid.unwrap();
        assert!(!uid.value.negate);
        assert_eq!(uid.value.items[1].value, Scalar::Int(1001));
        assert_eq!(uid.value.items[1].referenced.line(), 6);
        assert_eq!(uid.value.items[1].referenced.column(), 19);
        let comm = m.comm.unwrap();
        assert!(comm.value.negate);
        assert_eq!(comm.value.items[0].value, Scalar::Str("sshd".into()));
        let gid = m.gid.unwrap();
        assert_eq!(
            gid.referenced.line(),
            8,
            "a lone value is placed by its field"
        );
    }

    #[test]
    fn argument_matchers() {
        let r = rule(concat!(
            "    args:\n",
            "      request: [PTRACE_ATTACH, PTRACE_SEIZE]\n",
            "      arg1: {not: 0}\n",
            "      arg2: {any_bits: [O_WRONLY, O_RDWR]}\n",
            "      arg3: {range: [10, 0x20]}\n",
            "      arg4: protected\n",
            "      arg5: {not: protected}\n",
        ));
        let args = r.args.unwrap().0;
        assert_eq!(args[0].0.value, "request");
        assert!(matches!(&args[0].1.value, RawArg::Values(v) if v.items.len() == 2 && !v.negate));
        assert!(matches!(&args[1].1.value, RawArg::Values(v) if v.negate));
        assert!(
            matches!(&args[2].1.value, RawArg::Bits { kind: BitsKind::Any, items } if items.len() == 2)
        );
        assert!(
            matches!(&args[3].1.value, RawArg::Range { outside: false, bounds } if bounds[1].value == Scalar::Int(32))
        );
        assert_eq!(args[4].1.value, RawArg::Protected { negate: false });
        assert_eq!(args[5].1.value, RawArg::Protected { negate: true });
    }

    #[test]
    fn actions() {
        let text = "rules:\n  - name: r\n    syscall: [kill, tkill]\n    action: {signal: SIGSTOP, thread: true}\n";
        let r = parse(text).unwrap().rules.remove(0);
        assert_eq!(r.syscall.unwrap().value.0.len(), 2);
        assert!(matches!(
            r.action.value,
            RawAction::Signal { thread: true, .. }
        ));
        let err = parse("rules:\n  - name: r\n    syscall: kill\n    action: kil\n").unwrap_err();
        assert!(err.to_string().contains("did you mean `kill`?"), "{err}");
        assert_eq!(err.location().unwrap().line(), 4);
    }

    #[test]
    fn values_come_from_the_environment() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("REFLEX_TEST_SYSCALL", "kill") };
        let r = parse("rules:\n  - name: r\n    syscall: ${REFLEX_TEST_SYSCALL}\n    action: ${REFLEX_TEST_UNSET:-audit}\n")
            .unwrap()
            .rules
            .remove(0);
        assert_eq!(r.syscall.unwrap().value.0[0].value.as_str(), "kill");
        assert_eq!(r.action.value, RawAction::Audit);
        let err =
            parse("rules:\n  - name: r\n    syscall: ${REFLEX_TEST_UNSET}\n    action: kill\n")
                .unwrap_err();
        assert!(err.to_string().contains("REFLEX_TEST_UNSET"), "{err}");
        assert_eq!(err.location().unwrap().line(), 3);
    }

    #[test]
    fn hook_rules_and_deny_actions() {
        let text = "rules:\n  - name: r\n    hook: ptrace\n    action: {deny: EACCES, signal: SIGKILL}\n    fallback: kill\n";
        let r = parse(text).unwrap().rules.remove(0);
        assert!(r.syscall.is_none());
        assert_eq!(r.hook.unwrap().value.as_str(), "ptrace");
        assert!(matches!(
            r.action.value,
            RawAction::Deny {
                error: Some(_),
                signal: Some(_),
                ..
            }
        ));
        assert_eq!(r.fallback.unwrap().value, RawAction::Kill);
        let r = parse("rules:\n  - {name: r, hook: exec, action: deny}\n")
            .unwrap()
            .rules
            .remove(0);
        assert_eq!(
            r.action.value,
            RawAction::Deny {
                error: None,
                signal: None,
                thread: false
            }
        );
    }

    #[test]
    fn shape_errors_have_places() {
        let err = parse("rules:\n  - name: r\n    sycall: ptrace\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `sycall`"), "{err}");
        assert_eq!(err.location().unwrap().line(), 3);
        let err = parse("rules:\n  - name: r\n    syscall: kill\n    action: kill\n    args: {arg0: {between: 3}}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown argument matcher `between`"),
            "{err}"
        );
    }
}
