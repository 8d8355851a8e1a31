//! Who may see which camera, and how: the access matrix of role × camera group × use.
//!
//! | role     | police / traffic / public place      | school cameras                        |
//! |----------|--------------------------------------|---------------------------------------|
//! | operator | map, snapshot, live view             | nothing, unless granted `school_cameras` |
//! | police   | map, snapshot, live view             | nothing                               |
//! | leader   | map; images only if granted `camera_images` | nothing                        |
//! | school   | nothing                              | its own school's: map, snapshot, live |
//! | admin    | map (positions and states)           | map (positions and states)            |
//! | agency, citizen, sensor | nothing               | nothing                               |
//!
//! "Images" are snapshots and live view; every image access is audited by the caller of
//! these checks. A caller who may not use a camera learns nothing about it: the API answers
//! 403 alike for a forbidden camera and for one that does not exist.

use std::fmt;
use std::str::FromStr;

use model::camera::SchoolScope;
use model::report::SensitiveScope;
use model::{CameraGroup, CameraScope, LocalId};
use serde::{Deserialize, Serialize};

use crate::{Claims, Role};

/// Rights a token may carry beyond its role's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Snapshots and live view of non-school cameras (for a leader).
    CameraImages,
    /// School cameras: map, snapshots and live view (for an operator).
    SchoolCameras,
}

impl Grant {
    pub const ALL: [Grant; 2] = [Grant::CameraImages, Grant::SchoolCameras];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::CameraImages => "camera_images",
            Grant::SchoolCameras => "school_cameras",
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Grant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Grant::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("unknown grant {s:?} (camera_images, school_cameras)"))
    }
}

/// What a caller does with a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraUse {
    /// See it on the map: position, state, statistics.
    Layer,
    Snapshot,
    LiveView,
}

impl CameraUse {
    pub const ALL: [CameraUse; 3] = [CameraUse::Layer, CameraUse::Snapshot, CameraUse::LiveView];

    pub fn as_str(self) -> &'static str {
        match self {
            CameraUse::Layer => "layer",
            CameraUse::Snapshot => "snapshot",
            CameraUse::LiveView => "live_view",
        }
    }
}

impl Claims {
    pub fn has(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }

    /// May this caller use a camera of `group` this way?
    pub fn may_use_camera(&self, group: &CameraGroup, use_: CameraUse) -> bool {
        let school = matches!(group, CameraGroup::School(_));
        let images = use_ != CameraUse::Layer;
        match self.role {
            Role::Operator => !school || self.has(Grant::SchoolCameras),
            Role::Police => !school,
            Role::Leader => !school && (!images || self.has(Grant::CameraImages)),
            Role::School => match (group, &self.agency) {
                (CameraGroup::School(site), Some(mine)) => site.as_str() == mine,
                _ => false,
            },
            Role::Admin => !images,
            Role::Agency | Role::Citizen | Role::Sensor => false,
        }
    }
}

impl Claims {
    /// The sensitive matters (public-order reports, alerts about them) this caller sees:
    /// all for the centre, leaders and police, its own for an agency, none for the rest.
    pub fn sensitive_scope(&self) -> SensitiveScope {
        match self.role {
            Role::Operator | Role::Admin | Role::Leader | Role::Police => SensitiveScope::All,
            Role::Agency => self
                .agency
                .as_deref()
                .and_then(|a| LocalId::parse("agency", a).ok())
                .map_or(SensitiveScope::None, SensitiveScope::Agency),
            Role::Citizen | Role::School | Role::Sensor => SensitiveScope::None,
        }
    }

    /// The cameras this caller sees on the map (the [`CameraUse::Layer`] column of the matrix).
    pub fn camera_scope(&self) -> CameraScope {
        let sees = |g: CameraGroup| self.may_use_camera(&g, CameraUse::Layer);
        let schools = match (self.role, &self.agency) {
            (Role::School, Some(mine)) => match LocalId::parse("agency", mine) {
                Ok(id) if sees(CameraGroup::School(id.clone())) => SchoolScope::One(id),
                _ => SchoolScope::None,
            },
            (Role::School, None) => SchoolScope::None,
            _ => match LocalId::parse("school", "any-school") {
                Ok(any) if sees(CameraGroup::School(any.clone())) => SchoolScope::All,
                _ => SchoolScope::None,
            },
        };
        CameraScope {
            police: sees(CameraGroup::Police),
            traffic: sees(CameraGroup::Traffic),
            public_place: sees(CameraGroup::PublicPlace),
            schools,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::LocalId;

    fn claims(role: Role, agency: Option<&str>, grants: &[Grant]) -> Claims {
        Claims {
            sub: "t".into(),
            role,
            agency: agency.map(str::to_string),
            grants: grants.to_vec(),
            stations: vec![],
            iat: 0,
            exp: 0,
        }
    }

    fn school(s: &str) -> CameraGroup {
        CameraGroup::School(LocalId::parse("group", s).unwrap())
    }

    #[test]
    fn the_matrix() {
        use CameraUse::*;
        let police = CameraGroup::Police;
        let traffic = CameraGroup::Traffic;
        let a = school("lx-th-a");
        let all = [Layer, Snapshot, LiveView];
        let yes = |c: &Claims, g: &CameraGroup, uses: &[CameraUse]| {
            for u in all {
                assert_eq!(
                    c.may_use_camera(g, u),
                    uses.contains(&u),
                    "{:?} {:?} {g} {u:?}",
                    c.role,
                    c.grants
                );
            }
        };
        let op = claims(Role::Operator, None, &[]);
        yes(&op, &police, &all);
        yes(&op, &traffic, &all);
        yes(&op, &a, &[]);
        yes(
            &claims(Role::Operator, None, &[Grant::SchoolCameras]),
            &a,
            &all,
        );
        let pol = claims(Role::Police, None, &[]);
        yes(&pol, &police, &all);
        yes(&pol, &traffic, &all);
        yes(&pol, &a, &[]);
        let leader = claims(Role::Leader, None, &[]);
        yes(&leader, &police, &[Layer]);
        yes(&leader, &a, &[]);
        yes(
            &claims(Role::Leader, None, &[Grant::CameraImages]),
            &traffic,
            &all,
        );
        let sch = claims(Role::School, Some("lx-th-a"), &[]);
        yes(&sch, &a, &all);
        yes(&sch, &school("lx-th-b"), &[]);
        yes(&sch, &police, &[]);
        yes(&claims(Role::School, None, &[]), &a, &[]);
        let admin = claims(Role::Admin, None, &[]);
        yes(&admin, &police, &[Layer]);
        yes(&admin, &a, &[Layer]);
        for r in [Role::Agency, Role::Citizen, Role::Sensor] {
            yes(&claims(r, Some("lx-th-a"), &[]), &traffic, &[]);
            yes(&claims(r, Some("lx-th-a"), &[]), &a, &[]);
        }
    }

    #[test]
    fn map_scopes_follow_the_layer_column() {
        let op = claims(Role::Operator, None, &[]).camera_scope();
        assert!(op.police && op.traffic && op.schools == SchoolScope::None);
        let granted = claims(Role::Operator, None, &[Grant::SchoolCameras]).camera_scope();
        assert_eq!(granted.schools, SchoolScope::All);
        let sch = claims(Role::School, Some("lx-th-a"), &[]).camera_scope();
        assert!(!sch.police && sch.allows(&school("lx-th-a")) && !sch.allows(&school("lx-th-b")));
        assert_eq!(
            claims(Role::Citizen, None, &[]).camera_scope(),
            CameraScope::default()
        );
    }

    #[test]
    fn grants_read_as_strings() {
        assert_eq!("camera_images".parse::<Grant>(), Ok(Grant::CameraImages));
        assert!("everything".parse::<Grant>().is_err());
    }
}
