//! Plain SQL run the same way on both backends: statements are written with PostgreSQL's `$1`
//! placeholders (turned into `?1` for SQLite) in SQL both accept (`CAST(… AS BIGINT)`, not
//! `::`; `CASE`, not `GREATEST`), arguments and cells are a few plain types. Row locks only
//! PostgreSQL takes are written as markers (see [`super::tx`]). The callback hot paths keep
//! their own backend-tuned code.

/// A statement argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer (BIGINT).
    Int(i64),
    /// Text.
    Text(String),
    /// A boolean (BOOLEAN on PostgreSQL, 0/1 on SQLite).
    Bool(bool),
    /// Bytes (BLOB on SQLite, BYTEA on PostgreSQL).
    Bytes(Vec<u8>),
    /// NULL for an integer column.
    NullInt,
    /// NULL for a text column.
    NullText,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Self::NullInt, Self::Int)
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Self::NullText, Self::from)
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        v.map_or(Self::NullText, Self::Text)
    }
}

/// A result cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Integers and booleans.
    Int(i64),
    /// Text (and bytes, lossily).
    Text(String),
    /// NULL.
    Null,
}

impl Cell {
    /// The integer, or 0.
    pub fn int(&self) -> i64 {
        match self {
            Self::Int(v) => *v,
            Self::Text(t) => t.parse().unwrap_or(0),
            Self::Null => 0,
        }
    }

    /// The integer, if not NULL.
    pub fn opt_int(&self) -> Option<i64> {
        match self {
            Self::Null => None,
            other => Some(other.int()),
        }
    }

    /// The text, or "".
    pub fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Int(v) => v.to_string(),
            Self::Null => String::new(),
        }
    }

    /// The text, if not NULL.
    pub fn opt_text(&self) -> Option<String> {
        match self {
            Self::Null => None,
            other => Some(other.text()),
        }
    }
}

/// Rows of cells.
pub type Rows = Vec<Vec<Cell>>;

/// A statement with its arguments.
pub type Statement = (&'static str, Vec<Arg>);

/// `$1`-style placeholders as SQLite's `?1`.
pub(super) fn to_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_translated_for_sqlite() {
        assert_eq!(super::to_sqlite("SELECT $1, $12 WHERE a = '$x'"), "SELECT ?1, ?12 WHERE a = '$x'");
    }
}
