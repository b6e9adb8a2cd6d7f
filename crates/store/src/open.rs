//! Opening a store: the one entry point of front ends (the CLI, a future
//! MCP server or HTML timeline), which then hold a `Box<dyn Store>` and
//! never name a backend.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::FsStore;
use crate::store::{Store, StoreOptions};

/// Where a store is; [`open`] picks the backend from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A `.milestones/state` directory: the seed's layout, shared with
    /// its bash functions.
    Files(PathBuf),
    /// A schema of a PostgreSQL database: `url` is the connection string
    /// without mstate's own `schema` parameter.
    Postgres { url: String, schema: String },
}

impl Location {
    /// The store of a command started in `cwd`: `env_dir` (`MSTATE_DIR`)
    /// if given, else the nearest ancestor of `cwd` holding
    /// `.milestones/state`, else `cwd/.milestones/state` (created by the
    /// first write).
    pub fn discover(cwd: &Path, env_dir: Option<&Path>) -> Location {
        Location::Files(crate::fs::discover(cwd, env_dir))
    }

    /// The location a user wrote (`--store`, `MSTATE_STORE`):
    /// `postgres://user@host:port/db?schema=NAME` (or `postgresql://`;
    /// schema [`crate::pg::DEFAULT_SCHEMA`] when not given, the other
    /// parameters are the server's, `sslmode` included), or else the path
    /// of a `.milestones/state` directory, relative to `cwd`.
    pub fn parse(text: &str, cwd: &Path) -> Result<Location> {
        let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            if text.is_empty() {
                return Err(Error::invalid(
                    "store location",
                    "it is empty; give a postgres:// URL or a directory",
                ));
            }
            return Ok(Location::Files(cwd.join(text)));
        }
        let (base, query) = match text.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (text, None),
        };
        let mut schema = None;
        let mut rest = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("schema", value)) => {
                    if schema.replace(value.to_string()).is_some() {
                        return Err(Error::invalid(
                            "store URL",
                            "it gives `schema` twice; give it once",
                        ));
                    }
                }
                _ if pair.is_empty() => {}
                _ => rest.push(pair),
            }
        }
        let schema =
            match schema {
                Some(s) if s.is_empty() => return Err(Error::invalid(
                    "store URL",
                    "its `schema` is empty; name a schema (e.g. ?schema=mstate) or leave it out",
                )),
                Some(s) => s,
                None => crate::pg::DEFAULT_SCHEMA.to_string(),
            };
        crate::pg::migrate::check_schema_name(&schema)?;
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        Ok(Location::Postgres { url, schema })
    }
}

impl std::fmt::Display for Location {
    /// For messages: a directory, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Files(root) => write!(f, "{}", root.display()),
            Location::Postgres { url, schema } => {
                write!(f, "{}?schema={schema}", without_password(url))
            }
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Open the store at `location`.
pub fn open(location: &Location, options: StoreOptions) -> Result<Box<dyn Store>> {
    match location {
        Location::Files(root) => Ok(Box::new(FsStore::open(root.clone(), options)?)),
        Location::Postgres { url, schema } => {
            Ok(Box::new(crate::pg::PgStore::open(url, schema, options)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let cwd = Path::new("/w");
        assert_eq!(
            Location::parse("postgres://u@h:5432/db?schema=team_a&sslmode=require", cwd).unwrap(),
            Location::Postgres {
                url: "postgres://u@h:5432/db?sslmode=require".into(),
                schema: "team_a".into()
            }
        );
        assert_eq!(
            Location::parse("postgresql://u@h/db", cwd).unwrap(),
            Location::Postgres {
                url: "postgresql://u@h/db".into(),
                schema: crate::pg::DEFAULT_SCHEMA.into()
            }
        );
        assert_eq!(
            Location::parse("st/.milestones/state", cwd).unwrap(),
            Location::Files(PathBuf::from("/w/st/.milestones/state"))
        );
        for bad in [
            "",
            "postgres://h/db?schema=",
            "postgres://h/db?schema=a&schema=b",
            "postgres://h/db?schema=Robert'); DROP",
        ] {
            assert!(Location::parse(bad, cwd).is_err(), "{bad}");
        }
        let shown = Location::parse("postgres://u:pw@h/db", cwd)
            .unwrap()
            .to_string();
        assert_eq!(shown, "postgres://u:***@h/db?schema=mstate");
    }
    use crate::id::MilestoneId;
    use crate::store::WriteOptions;

    /// A store opened through `open` is the store at that location: what
    /// one handle saves, another opened there loads; the location names it.
    #[test]
    fn open_gives_the_store_at_the_location() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::discover(dir.path(), None);
        assert_eq!(
            location,
            Location::Files(dir.path().join(crate::fs::STORE_DIR))
        );
        let id = MilestoneId::new("m").unwrap();
        let a = open(&location, StoreOptions::default()).unwrap();
        assert!(!a.exists().unwrap());
        a.save(
            &id,
            &serde_json::json!({"step": 1}),
            &WriteOptions::default(),
        )
        .unwrap();
        assert!(a.take_created());
        let b = open(&location, StoreOptions::default()).unwrap();
        let loaded = b.load(&id, &WriteOptions::default()).unwrap();
        assert_eq!(loaded.envelope.state, serde_json::json!({"step": 1}));
        assert!(b.location().ends_with(crate::fs::STORE_DIR));
        b.require_known(&id).unwrap();
        let other = MilestoneId::new("n").unwrap();
        assert!(matches!(
            b.require_known(&other),
            Err(crate::Error::UnknownMilestone { .. })
        ));
    }
}
