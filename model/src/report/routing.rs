//! Which agency handles a new report, and how long it has.
//!
//! A route says "reports of `service` inside `unit` go to `agency`". `service` is a code
//! (`infra.lighting`), a group prefix (`infra.*`) or `*`. The deepest unit containing the
//! report that has any matching route wins, and at that unit the most specific service
//! pattern wins (code, then prefix, then `*`); nothing matching leaves the report in the IOC
//! operators' queue. Deadlines follow the same patterns, optionally per administrative level
//! of the unit the route matched at; the catalogue's default applies when none is set.

use serde::{Deserialize, Serialize};

use super::service;
use crate::id::LocalId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// `infra.lighting`, `infra.*` or `*`.
    pub service: String,
    pub unit: LocalId,
    pub agency: LocalId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlineRule {
    /// `infra.lighting`, `infra.*` or `*`.
    pub service: String,
    /// Level of the unit the route matched at ("phường", "huyện"); any when unset.
    #[serde(default)]
    pub level: Option<String>,
    pub hours: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteTable {
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub deadlines: Vec<DeadlineRule>,
}

/// The outcome of routing one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub agency: Option<LocalId>,
    /// The route in words, recorded with the report.
    pub rule: String,
    /// Level of the unit the route matched at.
    pub level: Option<String>,
    pub deadline_h: u32,
}

/// How specifically `pattern` names `code`: 3 exact, 2 group prefix, 1 `*`, `None` no match.
fn specificity(pattern: &str, code: &str) -> Option<u8> {
    if pattern == code {
        Some(3)
    } else if pattern == "*" {
        Some(1)
    } else if let Some(prefix) = pattern.strip_suffix(".*") {
        code.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
            .then_some(2)
    } else {
        None
    }
}

impl RouteTable {
    /// Routes a report of `code` placed in `units` (deepest first); `level_of` gives a unit's
    /// administrative level.
    pub fn route(
        &self,
        code: &str,
        units: &[LocalId],
        level_of: impl Fn(&LocalId) -> Option<String>,
    ) -> Routed {
        for unit in units {
            let best = self
                .routes
                .iter()
                .filter(|r| &r.unit == unit)
                .filter_map(|r| specificity(&r.service, code).map(|s| (s, r)))
                .max_by_key(|(s, _)| *s);
            if let Some((_, r)) = best {
                let level = level_of(unit);
                return Routed {
                    agency: Some(r.agency.clone()),
                    rule: format!("{} tại {}", r.service, r.unit),
                    deadline_h: self.deadline_h(code, level.as_deref()),
                    level,
                };
            }
        }
        let level = units.first().and_then(&level_of);
        Routed {
            agency: None,
            rule: match units.first() {
                Some(u) => format!("không có tuyến cho {code} tại {u}: hàng đợi Trung tâm IOC"),
                None => "ngoài địa bàn: hàng đợi Trung tâm IOC".into(),
            },
            deadline_h: self.deadline_h(code, level.as_deref()),
            level,
        }
    }

    /// Hours allowed for `code` at `level`.
    pub fn deadline_h(&self, code: &str, level: Option<&str>) -> u32 {
        self.deadlines
            .iter()
            .filter(|d| d.level.is_none() || d.level.as_deref() == level)
            .filter_map(|d| {
                specificity(&d.service, code).map(|s| ((s, d.level.is_some()), d.hours))
            })
            .max_by_key(|(k, _)| *k)
            .map(|(_, h)| h)
            .or_else(|| service(code).map(|s| s.deadline_h))
            .unwrap_or(72)
    }

    /// Agencies the routes name (to check against the registry).
    pub fn agencies(&self) -> impl Iterator<Item = &LocalId> {
        self.routes.iter().map(|r| &r.agency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> LocalId {
        LocalId::parse("id", s).unwrap()
    }

    fn table() -> RouteTable {
        let r = |s: &str, u: &str, a: &str| Route {
            service: s.into(),
            unit: id(u),
            agency: id(a),
        };
        RouteTable {
            routes: vec![
                r("*", "lx", "lx-vhtt"),
                r("order.*", "lx", "lx-ca"),
                r("infra.*", "lx-my-binh", "lx-my-binh-ubnd"),
                r("infra.lighting", "lx", "lx-qldt"),
            ],
            deadlines: vec![
                DeadlineRule {
                    service: "infra.*".into(),
                    level: Some("phường".into()),
                    hours: 36,
                },
                DeadlineRule {
                    service: "infra.lighting".into(),
                    level: None,
                    hours: 96,
                },
            ],
        }
    }

    fn level(u: &LocalId) -> Option<String> {
        Some(
            if u.as_str() == "lx" {
                "thành phố"
            } else {
                "phường"
            }
            .into(),
        )
    }

    #[test]
    fn the_deepest_unit_then_the_most_specific_service_wins() {
        let t = table();
        let ward = [id("lx-my-binh"), id("lx")];
        let r = t.route("infra.lighting", &ward, level);
        assert_eq!(r.agency, Some(id("lx-my-binh-ubnd")), "ward before city");
        assert_eq!(r.level.as_deref(), Some("phường"));
        assert_eq!(
            r.deadline_h, 96,
            "a code beats a prefix, whatever the level"
        );
        let r = t.route("order.security", &ward, level);
        assert_eq!(r.agency, Some(id("lx-ca")), "prefix beats *");
        assert_eq!(r.deadline_h, 24, "catalogue default");
        let other_ward = [id("lx-my-long"), id("lx")];
        let r = t.route("infra.lighting", &other_ward, level);
        assert_eq!(r.agency, Some(id("lx-qldt")));
        let r = t.route("infra.water_supply", &ward, level);
        assert_eq!(r.deadline_h, 36, "per-level deadline");
        let r = t.route("social.welfare", &other_ward, level);
        assert_eq!(r.agency, Some(id("lx-vhtt")));
    }

    #[test]
    fn nothing_matching_goes_to_the_operators_queue() {
        let t = table();
        let r = t.route("infra.lighting", &[id("hg-vi-thanh"), id("hg")], level);
        assert_eq!(r.agency, None);
        assert!(r.rule.contains("hàng đợi Trung tâm IOC"), "{}", r.rule);
        let r = t.route("infra.lighting", &[], level);
        assert_eq!(r.agency, None);
        assert!(r.rule.starts_with("ngoài địa bàn"));
        assert_eq!(specificity("infra.*", "infrastructure.x"), None);
    }
}
