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

/// What an entity is: the prefix of its [`EntityId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Station,
    Camera,
    Unit,
    Zone,
    Agency,
    Report,
    Alert,
    River,
    /// An indicator of the catalogue (`indicator:{code}`): the key of its values on
    /// `ioc.indicators`.
    Indicator,
    /// One indicator's figures for one unit (`series:{code}@{unit}`), on the `indicators`
    /// layer.
    Series,
    /// Where a dead letter came from when the input named no entity.
    Source,
    /// A video-wall layout (`layout:{id}`), on the `layouts` layer.
    Layout,
}

impl EntityKind {
    pub const ALL: [EntityKind; 12] = [
        EntityKind::Station,
        EntityKind::Camera,
        EntityKind::Unit,
        EntityKind::Zone,
        EntityKind::Agency,
        EntityKind::Report,
        EntityKind::Alert,
        EntityKind::River,
        EntityKind::Indicator,
        EntityKind::Series,
        EntityKind::Source,
        EntityKind::Layout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Station => "station",
            EntityKind::Camera => "camera",
            EntityKind::Unit => "unit",
            EntityKind::Zone => "zone",
            EntityKind::Agency => "agency",
            EntityKind::Report => "report",
            EntityKind::Alert => "alert",
            EntityKind::River => "river",
            EntityKind::Indicator => "indicator",
            EntityKind::Series => "series",
            EntityKind::Source => "source",
            EntityKind::Layout => "layout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind:local`, e.g. `station:hg-vt-sal-01`, `unit:hg-vi-thanh`. The bus key of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EntityId(pub(crate) String);

impl EntityId {
    pub fn new(kind: EntityKind, local: &LocalId) -> Self {
        Self(format!("{}:{local}", kind.as_str()))
    }

    pub fn station(local: &LocalId) -> Self {
        Self::new(EntityKind::Station, local)
    }

    /// `series:{indicator}@{unit}`: one indicator's figures for one unit. `@` is never in a
    /// local id, so the two parts come back apart unambiguously.
    pub fn series(indicator: &LocalId, unit: &LocalId) -> Self {
        Self(format!("series:{indicator}@{unit}"))
    }

    /// The (indicator, unit) of a series id.
    pub fn series_parts(&self) -> Option<(LocalId, LocalId)> {
        let (i, u) = self.0.strip_prefix("series:")?.split_once('@')?;
        Some((
            LocalId::parse("indicator", i).ok()?,
            LocalId::parse("unit", u).ok()?,
        ))
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let (kind, local) = s
            .split_once(':')
            .ok_or_else(|| FieldError::new("entity", "must look like kind:id"))?;
        if EntityKind::parse(kind).is_none() {
            let known: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(FieldError::new(
                "entity",
                format!("kind must be one of {}", known.join(", ")),
            ));
        }
        match local.split_once('@') {
            Some((i, u)) if kind == "series" => {
                LocalId::parse("entity", i)?;
                LocalId::parse("entity", u)?;
            }
            _ => {
                LocalId::parse("entity", local)?;
            }
        }
        Ok(Self(s.to_string()))
    }

    /// The kind (every id is built or parsed with a known one).
    pub fn kind(&self) -> EntityKind {
        self.0
            .split_once(':')
            .and_then(|(k, _)| EntityKind::parse(k))
            .unwrap_or(EntityKind::Source)
    }

    /// True for an entity of `kind`.
    pub fn is(&self, kind: EntityKind) -> bool {
        self.kind() == kind
    }

    /// The local id, when this is an entity of `kind`.
    pub fn local_of(&self, kind: EntityKind) -> Option<LocalId> {
        if !self.is(kind) {
            return None;
        }
        LocalId::parse(kind.as_str(), self.local()).ok()
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
        assert_eq!(e.kind(), EntityKind::Station);
        assert_eq!(e.local(), "hg-vt-sal-01");
        assert!(EntityId::parse("station").is_err());
        assert!(EntityId::parse("Station:x").is_err());
        assert!(EntityId::parse("station:../etc").is_err());
    }
}
