//! Where the store is: `IRONHOST_DATABASE_URL` read into a [`Location`].
//!
//! - unset: `ironhost.db` in the ironhost home (SQLite, the embedded default);
//! - `sqlite:PATH` or `sqlite://PATH`: that SQLite file (`%XX` escapes decoded, no parameters);
//! - `postgres://…` or `postgresql://…`: a PostgreSQL database (the URL as libpq and sqlx take
//!   it: `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require`).
//!
//! A URL's password never appears in a message: [`mask`] hides it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

/// The variable that chooses the store.
pub const DATABASE_URL_VAR: &str = "IRONHOST_DATABASE_URL";

/// Where the store is.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// `ironhost.db` in the ironhost home.
    Home,
    /// A SQLite database file.
    SqliteFile(PathBuf),
    /// A PostgreSQL database; `url` may hold a password, `masked` does not.
    Postgres { url: String, masked: String },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Home => f.write_str("Home"),
            Location::SqliteFile(p) => f.debug_tuple("SqliteFile").field(p).finish(),
            Location::Postgres { masked, .. } => f.debug_tuple("Postgres").field(masked).finish(),
        }
    }
}

impl Location {
    /// The location `vars` (the process's environment) choose: [`DATABASE_URL_VAR`], else the
    /// home. The error is the reason the variable's value is refused.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Location, String> {
        match vars.get(DATABASE_URL_VAR) {
            None => Ok(Location::Home),
            Some(url) => Location::parse(url),
        }
    }

    /// Read a database URL.
    pub fn parse(url: &str) -> Result<Location, String> {
        const FORMS: &str = "postgres://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL, \
             sqlite:PATH for a SQLite file, or leave it unset for ironhost.db in the ironhost home";
        let url = url.trim();
        if url.is_empty() {
            return Err(format!("it is empty; set it to {FORMS}"));
        }
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(format!("not a URL; expected {FORMS}"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                if !rest.starts_with("//") {
                    return Err(format!(
                        "not a PostgreSQL URL: expected {scheme}://USER:PASSWORD@HOST:PORT/DATABASE"
                    ));
                }
                let masked = mask(url);
                sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
                    format!("`{masked}` is not a PostgreSQL URL: {}", without_prefix(&e))
                })?;
                Ok(Location::Postgres {
                    url: url.to_owned(),
                    masked,
                })
            }
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.contains('?') {
                    return Err(
                        "a sqlite URL takes no parameters (the store sets its own): sqlite:PATH"
                            .to_owned(),
                    );
                }
                if path.is_empty() {
                    return Err("the sqlite URL names no file: sqlite:PATH".to_owned());
                }
                if path == ":memory:" || path.starts_with("file:") {
                    return Err(
                        "only a file path is taken (an in-memory database would lose everything at exit): sqlite:PATH"
                            .to_owned(),
                    );
                }
                Ok(Location::SqliteFile(PathBuf::from(percent_decode(path)?)))
            }
            other => Err(format!(
                "the scheme `{other}` is not supported; expected {FORMS}"
            )),
        }
    }
}

/// sqlx's configuration errors start with "error with configuration: ".
fn without_prefix(e: &sqlx::Error) -> String {
    let text = e.to_string();
    text.strip_prefix("error with configuration: ")
        .map(str::to_owned)
        .unwrap_or(text)
}

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`.
/// A text that is not of the form `SCHEME://…` shows only its scheme.
pub fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:…"),
            None => "…".to_owned(),
        };
    };
    let mut out = format!("{scheme}://");
    // The user info ends at the last `@` (a password may hold `/`, `?` or `@` unescaped).
    let after = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => out.push_str(&format!("{user}:***@")),
                None => out.push_str(&format!("{userinfo}@")),
            }
            after
        }
        None => rest,
    };
    match after.split_once('?') {
        Some((place, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(place);
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

/// `%XX` escapes decoded (a path may hold `?` or `#` that way).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    "the path has a `%` not followed by two hex digits (write `%25` for `%`)"
                        .to_owned()
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded path is not UTF-8".to_owned())
}

/// `path` as sqlx's SQLite URL (`sqlite:///abs/path?mode=rwc`): every byte but the unreserved
/// ones and `/` escaped, so sqlx decodes exactly `path`.
pub(super) fn sqlite_url(path: &std::path::Path) -> Result<String, String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("cannot resolve it: {e}"))?;
    let text = absolute
        .to_str()
        .ok_or_else(|| "the path is not UTF-8".to_owned())?;
    let mut url = String::from("sqlite://");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(url: Option<&str>) -> BTreeMap<String, String> {
        url.map(|u| (DATABASE_URL_VAR.to_owned(), u.to_owned()))
            .into_iter()
            .collect()
    }

    #[test]
    fn the_url_chooses_the_backend() {
        assert_eq!(Location::from_vars(&vars(None)), Ok(Location::Home));
        assert_eq!(
            Location::from_vars(&vars(Some("sqlite:///var/lib/ironhost/store.db"))),
            Ok(Location::SqliteFile("/var/lib/ironhost/store.db".into()))
        );
        assert_eq!(
            Location::parse("sqlite:relative/x.db"),
            Ok(Location::SqliteFile("relative/x.db".into()))
        );
        assert_eq!(
            Location::parse("sqlite:/tmp/a%20b%3Fc.db"),
            Ok(Location::SqliteFile("/tmp/a b?c.db".into()))
        );
        let pg = Location::parse("postgres://ih:s3cret@db.internal:5433/ironhost?sslmode=require")
            .expect("postgres");
        assert_eq!(
            pg,
            Location::Postgres {
                url: "postgres://ih:s3cret@db.internal:5433/ironhost?sslmode=require".into(),
                masked: "postgres://ih:***@db.internal:5433/ironhost?sslmode=require".into(),
            }
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(matches!(
            Location::parse("postgresql://localhost/ironhost"),
            Ok(Location::Postgres { .. })
        ));
    }

    #[test]
    fn a_bad_url_says_why_and_never_shows_the_password() {
        for (url, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("ironhost.db", "not a URL"),
            ("mysql://u:hunter2@h/db", "scheme `mysql` is not supported"),
            ("sqlite:", "names no file"),
            ("sqlite://", "names no file"),
            ("sqlite::memory:", "in-memory"),
            ("sqlite:x.db?mode=ro", "no parameters"),
            ("sqlite:/tmp/50%.db", "`%25`"),
            ("postgres:u:hunter2@h/db", "not a PostgreSQL URL"),
            ("postgres://u:hunter2@h:notaport/db", "not a PostgreSQL URL"),
            (
                "postgres://u:hunter2@h/db?sslmode=sometimes",
                "not a PostgreSQL URL",
            ),
        ] {
            let err = Location::parse(url).expect_err(url);
            assert!(err.contains(reason), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn masking_hides_passwords_only() {
        assert_eq!(
            mask("postgres://u:p%40ss@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(mask("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask("postgres://h/db"), "postgres://h/db");
        assert_eq!(mask("postgres://u:a/b?c@h/db"), "postgres://u:***@h/db");
        assert_eq!(mask("postgres:u:p@h/db"), "postgres:…");
        assert_eq!(
            mask("postgres://h/db?user=u&password=p&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
    }

    #[test]
    fn a_sqlite_path_survives_the_url() {
        let url = sqlite_url(std::path::Path::new("/tmp/a b/c?d#e%f.db")).expect("url");
        assert_eq!(url, "sqlite:///tmp/a%20b/c%3Fd%23e%25f.db?mode=rwc");
        let decoded = percent_decode(
            url.trim_start_matches("sqlite://")
                .trim_end_matches("?mode=rwc"),
        )
        .expect("decode");
        assert_eq!(decoded, "/tmp/a b/c?d#e%f.db");
    }
}
