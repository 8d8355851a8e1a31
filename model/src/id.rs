//! Identifiers. A `LocalId` names a thing within its kind (`hg-vt-sal-01`); an `EntityId`
//! prefixes it with the kind (`station:hg-vt-sal-01`) and is the Kafka key of its events.
//! Ids come from senders, so they are restricted to a safe character set: they end up in
//! topic keys, URLs, log lines and file names.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::FieldError;

pub const MAX_ID_LEN: usize = 64;

/// An id within one kind: 1–64 characters of `a-z`, `0-9`, `-`, `_`, `.`, starting with a
/// letter or digit. Lower case only, so `HG-01` and `hg-01` cannot become two stations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LocalId(String);

impl LocalId {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        if s.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if s.len() > MAX_ID_LEN {
            return Err(FieldError::new(
                field,
                format!("longer than {MAX_ID_LEN} characters"),
            ));
        }
        let first_ok = s.as_bytes()[0].is_ascii_lowercase() || s.as_bytes()[0].is_ascii_digit();
        let all_ok = s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
        if !first_ok || !all_ok {
            return Err(FieldError::new(
                field,
                "may hold only a-z, 0-9, '-', '_' and '.', starting with a letter or digit",
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LocalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LocalId::parse("id", &s).map_err(serde::de::Error::custom)
    }
}

/// `kind:local`, e.g. `station:hg-vt-sal-01`, `unit:hg-vi-thanh`. The bus key of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EntityId(pub(crate) String);

impl EntityId {
    pub fn new(kind: &str, local: &LocalId) -> Self {
        Self(format!("{kind}:{local}"))
    }

    pub fn station(local: &LocalId) -> Self {
        Self::new("station", local)
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let (kind, local) = s
            .split_once(':')
            .ok_or_else(|| FieldError::new("entity", "must look like kind:id"))?;
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(FieldError::new("entity", "kind must be lower-case letters"));
        }
        LocalId::parse("entity", local)?;
        Ok(Self(s.to_string()))
    }

    pub fn kind(&self) -> &str {
        self.0.split_once(':').map(|(k, _)| k).unwrap_or("")
    }

    pub fn local(&self) -> &str {
        self.0.split_once(':').map(|(_, l)| l).unwrap_or(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EntityId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_pass_and_unsafe_ones_name_the_field() {
        assert!(LocalId::parse("station", "hg-vt-sal-01").is_ok());
        assert!(LocalId::parse("station", "a.b_c").is_ok());
        for bad in [
            "",
            "-x",
            "HG-01",
            "a b",
            "a/b",
            "x;drop",
            "ấp",
            &"a".repeat(65),
        ] {
            let e = LocalId::parse("station", bad).unwrap_err();
            assert_eq!(e.field, "station", "{bad:?}");
        }
    }

    #[test]
    fn entity_ids_split_into_kind_and_local() {
        let e = EntityId::parse("station:hg-vt-sal-01").unwrap();
        assert_eq!(e.kind(), "station");
        assert_eq!(e.local(), "hg-vt-sal-01");
        assert!(EntityId::parse("station").is_err());
        assert!(EntityId::parse("Station:x").is_err());
        assert!(EntityId::parse("station:../etc").is_err());
    }
}
