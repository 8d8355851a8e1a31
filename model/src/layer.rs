//! Map layers: what a client subscribes to and what the REST API lists.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Salinity stations with their latest values and level.
    Salinity,
    /// Air-quality stations with their latest concentrations.
    AirQuality,
    /// Administrative units (boundaries; approximate in the fixtures).
    Units,
    /// Alerts: raised, acknowledged, recently cleared; placed at their entity.
    Alerts,
    /// Salinity intrusion per river: inland reach of the 1‰ and 4‰ lines, risk level.
    Rivers,
    /// Custom zones drawn by operators (e.g. a rice-growing area).
    Zones,
    /// Field reports: open ones, and closed ones for a while.
    Reports,
    /// Cameras: position, state, stream statistics, last snapshot time (no images).
    Cameras,
    /// Indicators per unit: the latest periods' figures against their targets.
    Indicators,
    /// Video-wall layouts: their screens and panels, and where they are focused.
    Layouts,
}

impl Layer {
    pub const ALL: [Layer; 10] = [
        Layer::Salinity,
        Layer::AirQuality,
        Layer::Units,
        Layer::Alerts,
        Layer::Rivers,
        Layer::Zones,
        Layer::Reports,
        Layer::Cameras,
        Layer::Indicators,
        Layer::Layouts,
    ];

    /// Layers a replay can rewind from history (sensor state, for now).
    pub const REPLAYABLE: [Layer; 2] = [Layer::Salinity, Layer::AirQuality];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Salinity => "salinity",
            Layer::AirQuality => "air_quality",
            Layer::Units => "units",
            Layer::Alerts => "alerts",
            Layer::Rivers => "rivers",
            Layer::Zones => "zones",
            Layer::Reports => "reports",
            Layer::Cameras => "cameras",
            Layer::Indicators => "indicators",
            Layer::Layouts => "layouts",
        }
    }

    pub fn title_vi(self) -> &'static str {
        match self {
            Layer::Salinity => "Trạm đo mặn",
            Layer::AirQuality => "Trạm quan trắc không khí",
            Layer::Units => "Đơn vị hành chính",
            Layer::Alerts => "Cảnh báo",
            Layer::Rivers => "Xâm nhập mặn theo sông",
            Layer::Zones => "Vùng tùy chỉnh",
            Layer::Reports => "Phản ánh hiện trường",
            Layer::Cameras => "Camera",
            Layer::Indicators => "Chỉ tiêu",
            Layer::Layouts => "Bố cục màn hình tường",
        }
    }

    pub fn title_en(self) -> &'static str {
        match self {
            Layer::Salinity => "Salinity stations",
            Layer::AirQuality => "Air-quality stations",
            Layer::Units => "Administrative units",
            Layer::Alerts => "Alerts",
            Layer::Rivers => "Salinity intrusion by river",
            Layer::Zones => "Custom zones",
            Layer::Reports => "Field reports",
            Layer::Cameras => "Cameras",
            Layer::Indicators => "Indicators",
            Layer::Layouts => "Video-wall layouts",
        }
    }

    /// Live layers change with readings; others change only with the registry.
    pub fn is_live(self) -> bool {
        !matches!(self, Layer::Units)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layer {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Layer::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "layers",
                    format!(
                        "unknown layer {s:?}; known: {}",
                        Layer::ALL.map(|l| l.as_str()).join(", ")
                    ),
                )
            })
    }
}
