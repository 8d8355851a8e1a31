//! Sensor readings: what senders send (`RawReading`, loose JSON), what the IOC keeps
//! (`Reading`, validated, in canonical units) and the unit conversions between them.
//!
//! One reading is one measurement of one parameter at one station at one event time; that
//! triple is its natural key. Canonical units: salinity ‰, conductivity µS/cm, water level m,
//! temperature °C, concentrations µg/m³, humidity %.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Checker, FieldError, Invalid};
use crate::id::LocalId;

/// How far ahead of the receiver's clock an event time may be (sensor clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// What a station measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    Salinity,
    Conductivity,
    WaterLevel,
    Temperature,
    Ph,
    Humidity,
    Pm25,
    Pm10,
    So2,
    No2,
    O3,
    Co,
}

impl Parameter {
    pub const ALL: [Parameter; 12] = [
        Parameter::Salinity,
        Parameter::Conductivity,
        Parameter::WaterLevel,
        Parameter::Temperature,
        Parameter::Ph,
        Parameter::Humidity,
        Parameter::Pm25,
        Parameter::Pm10,
        Parameter::So2,
        Parameter::No2,
        Parameter::O3,
        Parameter::Co,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Parameter::Salinity => "salinity",
            Parameter::Conductivity => "conductivity",
            Parameter::WaterLevel => "water_level",
            Parameter::Temperature => "temperature",
            Parameter::Ph => "ph",
            Parameter::Humidity => "humidity",
            Parameter::Pm25 => "pm25",
            Parameter::Pm10 => "pm10",
            Parameter::So2 => "so2",
            Parameter::No2 => "no2",
            Parameter::O3 => "o3",
            Parameter::Co => "co",
        }
    }

    pub fn canonical_unit(self) -> Unit {
        match self {
            Parameter::Salinity => Unit::Permille,
            Parameter::Conductivity => Unit::MicroSiemensPerCm,
            Parameter::WaterLevel => Unit::Metre,
            Parameter::Temperature => Unit::Celsius,
            Parameter::Ph => Unit::Ph,
            Parameter::Humidity => Unit::Percent,
            _ => Unit::MicrogramPerCubicMetre,
        }
    }

    /// Values outside this range (canonical unit) are instrument faults, not weather.
    pub fn plausible_range(self) -> (f64, f64) {
        match self {
            Parameter::Salinity => (0.0, 60.0),
            Parameter::Conductivity => (0.0, 200_000.0),
            Parameter::WaterLevel => (-20.0, 50.0),
            Parameter::Temperature => (-20.0, 70.0),
            Parameter::Ph => (0.0, 14.0),
            Parameter::Humidity => (0.0, 100.0),
            Parameter::Pm25 | Parameter::Pm10 => (0.0, 5_000.0),
            Parameter::So2 | Parameter::No2 | Parameter::O3 => (0.0, 50_000.0),
            Parameter::Co => (0.0, 500_000.0),
        }
    }

    /// Molar mass in g/mol, for gases given as ppb/ppm (converted at 25 °C, 1 atm).
    fn molar_mass(self) -> Option<f64> {
        match self {
            Parameter::So2 => Some(64.066),
            Parameter::No2 => Some(46.0055),
            Parameter::O3 => Some(47.997),
            Parameter::Co => Some(28.010),
            _ => None,
        }
    }
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Parameter {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let norm = s.trim().to_ascii_lowercase().replace(['.', ' '], "");
        let p = match norm.as_str() {
            "salinity" | "sal" => Parameter::Salinity,
            "conductivity" | "ec" => Parameter::Conductivity,
            "water_level" | "waterlevel" | "level" => Parameter::WaterLevel,
            "temperature" | "temp" => Parameter::Temperature,
            "ph" => Parameter::Ph,
            "humidity" | "rh" => Parameter::Humidity,
            "pm25" | "pm2_5" => Parameter::Pm25,
            "pm10" => Parameter::Pm10,
            "so2" => Parameter::So2,
            "no2" => Parameter::No2,
            "o3" => Parameter::O3,
            "co" => Parameter::Co,
            _ => {
                return Err(FieldError::new(
                    "parameter",
                    format!(
                        "unknown parameter {s:?}; known: {}",
                        Parameter::ALL.map(|p| p.as_str()).join(", ")
                    ),
                ))
            }
        };
        Ok(p)
    }
}

/// Canonical units. Senders may use others; see [`convert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "‰")]
    Permille,
    #[serde(rename = "µS/cm")]
    MicroSiemensPerCm,
    #[serde(rename = "m")]
    Metre,
    #[serde(rename = "°C")]
    Celsius,
    #[serde(rename = "pH")]
    Ph,
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "µg/m³")]
    MicrogramPerCubicMetre,
}

impl Unit {
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Permille => "‰",
            Unit::MicroSiemensPerCm => "µS/cm",
            Unit::Metre => "m",
            Unit::Celsius => "°C",
            Unit::Ph => "pH",
            Unit::Percent => "%",
            Unit::MicrogramPerCubicMetre => "µg/m³",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// Converts `value` given in `unit` (as a sender wrote it) into the parameter's canonical
/// unit. Unknown units, and units that do not fit the parameter, are refused by name.
pub fn convert(parameter: Parameter, value: f64, unit: &str) -> Result<f64, FieldError> {
    let u = unit
        .trim()
        .replace('μ', "µ")
        .replace('³', "3")
        .to_lowercase();
    let u = u.replace("ug", "µg").replace("us/", "µs/");
    let unknown = || {
        FieldError::new(
            "unit",
            format!(
                "unit {unit:?} is not known for {parameter} (canonical unit: {})",
                parameter.canonical_unit()
            ),
        )
    };
    let v = match parameter {
        Parameter::Salinity => match u.as_str() {
            "‰" | "permille" | "ppt" | "g/l" | "psu" => value,
            "mg/l" => value / 1000.0,
            "%" => value * 10.0,
            // A conductivity sensor reporting as salinity: specific conductance at 25 °C.
            "µs/cm" => crate::salinity::from_specific_conductance(value),
            "ms/cm" => crate::salinity::from_specific_conductance(value * 1000.0),
            _ => return Err(unknown()),
        },
        Parameter::Conductivity => match u.as_str() {
            "µs/cm" => value,
            "ms/cm" => value * 1000.0,
            "s/m" => value * 10_000.0,
            _ => return Err(unknown()),
        },
        Parameter::WaterLevel => match u.as_str() {
            "m" => value,
            "cm" => value / 100.0,
            "mm" => value / 1000.0,
            _ => return Err(unknown()),
        },
        Parameter::Temperature => match u.as_str() {
            "°c" | "c" | "degc" | "celsius" => value,
            "k" => value - 273.15,
            "°f" | "f" => (value - 32.0) * 5.0 / 9.0,
            _ => return Err(unknown()),
        },
        Parameter::Ph => match u.as_str() {
            "ph" | "" => value,
            _ => return Err(unknown()),
        },
        Parameter::Humidity => match u.as_str() {
            "%" | "%rh" => value,
            _ => return Err(unknown()),
        },
        Parameter::Pm25
        | Parameter::Pm10
        | Parameter::So2
        | Parameter::No2
        | Parameter::O3
        | Parameter::Co => match (u.as_str(), parameter.molar_mass()) {
            ("µg/m3", _) => value,
            ("mg/m3", _) => value * 1000.0,
            ("ppb", Some(mw)) => value * mw / 24.45,
            ("ppm", Some(mw)) => value * 1000.0 * mw / 24.45,
            _ => return Err(unknown()),
        },
    };
    Ok(v)
}

/// Data quality as the sender flags it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    #[default]
    Good,
    Suspect,
    Bad,
}

/// A value with the unit the sender used, kept when a conversion happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub value: f64,
    pub unit: String,
    /// How the value was converted, when it is more than a change of unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<String>,
}

/// A validated reading in canonical units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub station: LocalId,
    pub parameter: Parameter,
    /// Event time, with the sender's offset preserved.
    pub ts: DateTime<FixedOffset>,
    pub value: f64,
    pub unit: Unit,
    #[serde(default)]
    pub quality: Quality,
    /// What the sender sent, when it was not already canonical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_as: Option<Measurement>,
}

/// The latest value of one parameter, as a station's state shows it
/// (`properties.latest.<parameter>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub value: f64,
    pub unit: Unit,
    pub ts: DateTime<FixedOffset>,
    #[serde(default)]
    pub quality: Quality,
    /// When it reached the IOC, if that was before its own time stamp (a sender clock
    /// ahead, or a forged time): it ranks as of then, not as of its stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrived_before_ts: Option<DateTime<FixedOffset>>,
}

impl Latest {
    /// The latest value `r`, received at `received`.
    pub fn of(r: &Reading, received: DateTime<FixedOffset>) -> Self {
        Self {
            value: r.value,
            unit: r.unit,
            ts: r.ts,
            quality: r.quality,
            arrived_before_ts: (received < r.ts).then_some(received),
        }
    }

    /// The time it ranks by against later readings: its stamp, or its arrival if earlier.
    /// A reading stamped ahead of its arrival (within the allowed skew) therefore cannot
    /// hold the latest value against genuine readings arriving after it.
    pub fn rank(&self) -> DateTime<FixedOffset> {
        self.arrived_before_ts.map_or(self.ts, |a| a.min(self.ts))
    }
}

/// A reading as a sender wrote it: JSON, not yet trusted.
#[derive(Debug, Clone)]
pub struct RawReading<'a>(pub &'a Value);

impl RawReading<'_> {
    /// Validates and converts. `topic_station` is the station named by the transport (the
    /// MQTT topic); a payload that names a different one is refused. `now` is the receiver's
    /// clock, used to refuse event times from the future.
    pub fn validate(
        &self,
        topic_station: Option<&LocalId>,
        now: DateTime<Utc>,
    ) -> Result<Reading, Invalid> {
        let mut c = Checker::default();
        let Some(obj) = self.0.as_object() else {
            return Err(FieldError::new("", "a reading must be a JSON object").into());
        };
        let station = match (obj.get("station"), topic_station) {
            (Some(Value::String(s)), topic) => {
                c.check(LocalId::parse("station", s))
                    .and_then(|id| match topic {
                        Some(t) if *t != id => {
                            c.fail(
                                "station",
                                format!("payload names {id} but the topic names {t}"),
                            );
                            None
                        }
                        _ => Some(id),
                    })
            }
            (Some(_), _) => {
                c.fail("station", "must be a string");
                None
            }
            (None, Some(t)) => Some(t.clone()),
            (None, None) => {
                c.fail("station", "is required");
                None
            }
        };
        let parameter = match obj.get("parameter") {
            Some(Value::String(s)) => c.check(s.parse::<Parameter>()),
            Some(_) => {
                c.fail("parameter", "must be a string");
                None
            }
            None => {
                c.fail("parameter", "is required");
                None
            }
        };
        let ts = match obj.get("ts") {
            Some(Value::String(s)) => c.check(parse_event_time(s, now)),
            Some(Value::Number(n)) => c.check(epoch_event_time(n.as_f64(), now)),
            Some(_) => {
                c.fail(
                    "ts",
                    "must be an RFC 3339 time with offset, or epoch seconds",
                );
                None
            }
            None => {
                c.fail("ts", "is required");
                None
            }
        };
        let raw_value = match obj.get("value") {
            Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()).or_else(|| {
                c.fail("value", "must be a finite number");
                None
            }),
            Some(Value::Null) | None => {
                c.fail("value", "is required");
                None
            }
            Some(_) => {
                c.fail(
                    "value",
                    "must be a finite number (NaN and Infinity are refused)",
                );
                None
            }
        };
        let unit = match obj.get("unit") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                c.fail("unit", "must be a string");
                None
            }
            None => None,
        };
        let quality = match obj.get("quality") {
            None | Some(Value::Null) => Quality::Good,
            Some(q) => serde_json::from_value(q.clone()).unwrap_or_else(|_| {
                c.fail("quality", "must be one of good, suspect, bad");
                Quality::Good
            }),
        };
        let converted = match (parameter, raw_value) {
            (Some(p), Some(v)) => {
                let unit = unit.unwrap_or(p.canonical_unit().symbol());
                c.check(convert(p, v, unit)).and_then(|cv| {
                    let (lo, hi) = p.plausible_range();
                    if cv.is_finite() && cv >= lo && cv <= hi {
                        Some(cv)
                    } else {
                        c.fail(
                            "value",
                            format!(
                                "{cv} {} is outside the plausible range {lo}..{hi} for {p}",
                                p.canonical_unit()
                            ),
                        );
                        None
                    }
                })
            }
            _ => None,
        };
        c.finish(|| {
            let p = parameter.expect("checked");
            let canonical = p.canonical_unit();
            let sent_unit = unit.unwrap_or(canonical.symbol());
            let raw = raw_value.expect("checked");
            let value = converted.expect("checked");
            Reading {
                station: station.expect("checked"),
                parameter: p,
                ts: ts.expect("checked"),
                value,
                unit: canonical,
                quality,
                sent_as: (sent_unit != canonical.symbol()).then(|| Measurement {
                    value: raw,
                    unit: sent_unit.to_string(),
                    conversion: (p == Parameter::Salinity
                        && sent_unit.to_lowercase().contains("s/cm"))
                    .then(|| crate::salinity::CONDUCTIVITY_CONVERSION.to_string()),
                }),
            }
        })
    }
}

/// Earliest event time accepted: anything before is a sensor with an unset clock.
fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

fn check_time(
    ts: DateTime<FixedOffset>,
    now: DateTime<Utc>,
) -> Result<DateTime<FixedOffset>, FieldError> {
    if ts.with_timezone(&Utc) > now + MAX_FUTURE_SKEW {
        return Err(FieldError::new(
            "ts",
            format!("{ts} is in the future (receiver clock {now}; allowed skew 5 min)"),
        ));
    }
    if ts.with_timezone(&Utc) < earliest() {
        return Err(FieldError::new(
            "ts",
            format!("{ts} is before 2000: the sensor clock is not set"),
        ));
    }
    Ok(ts)
}

/// Parses an RFC 3339 event time; an offset is required (a time without one is ambiguous).
pub fn parse_event_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<FixedOffset>, FieldError> {
    let ts = DateTime::parse_from_rfc3339(s.trim()).map_err(|_| {
        FieldError::new(
            "ts",
            format!("{s:?} is not an RFC 3339 time with offset, e.g. 2026-03-02T06:00:00+07:00"),
        )
    })?;
    check_time(ts, now)
}

fn epoch_event_time(
    secs: Option<f64>,
    now: DateTime<Utc>,
) -> Result<DateTime<FixedOffset>, FieldError> {
    let secs = secs
        .filter(|s| s.is_finite())
        .ok_or_else(|| FieldError::new("ts", "must be finite"))?;
    let millis = (secs * 1000.0).round() as i64;
    let ts = DateTime::<Utc>::from_timestamp_millis(millis)
        .ok_or_else(|| FieldError::new("ts", "epoch seconds out of range"))?;
    check_time(ts.fixed_offset(), now)
}

/// Splits a payload that is one reading, an array of readings or `{"readings": [...]}`.
pub fn split_payload(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) => match o.get("readings") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => vec![v],
        },
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    fn field_names(e: &Invalid) -> Vec<&str> {
        e.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_good_reading_is_kept_in_canonical_units() {
        let v = json!({"station":"hg-vt-sal-01","parameter":"salinity","ts":"2026-03-02T06:00:00+07:00","value":2300,"unit":"mg/L"});
        let r = RawReading(&v).validate(None, now()).unwrap();
        assert_eq!(r.unit, Unit::Permille);
        assert!((r.value - 2.3).abs() < 1e-9);
        assert_eq!(
            r.sent_as,
            Some(Measurement {
                value: 2300.0,
                unit: "mg/L".into(),
                conversion: None,
            })
        );
        assert_eq!(r.ts.offset().local_minus_utc(), 7 * 3600);
    }

    #[test]
    fn salinity_sent_as_conductivity_is_converted_and_says_how() {
        let v = json!({"station":"tg-vam-kenh-sal","parameter":"salinity","ts":"2026-03-02T06:00:00+07:00","value":7.5,"unit":"mS/cm"});
        let r = RawReading(&v).validate(None, now()).unwrap();
        assert_eq!(r.unit, Unit::Permille);
        assert!((r.value - 4.14).abs() < 0.05, "{}", r.value);
        let sent = r.sent_as.unwrap();
        assert_eq!((sent.value, sent.unit.as_str()), (7.5, "mS/cm"));
        assert!(sent.conversion.unwrap().contains("PSS-78"));
    }

    #[test]
    fn gases_in_ppb_are_converted_at_25_degrees() {
        // 1 ppb NO2 = 46.0055 / 24.45 µg/m³ = 1.8816 µg/m³
        let v = convert(Parameter::No2, 100.0, "ppb").unwrap();
        assert!((v - 188.16).abs() < 0.01, "{v}");
        assert!(
            convert(Parameter::Pm25, 1.0, "ppb").is_err(),
            "particles have no molar mass"
        );
    }

    #[test]
    fn nonsense_is_refused_naming_each_field() {
        let v = json!({"station":"HG 01","parameter":"radiation","ts":"yesterday","value":"high"});
        let e = RawReading(&v).validate(None, now()).unwrap_err();
        assert_eq!(field_names(&e), vec!["station", "parameter", "ts", "value"]);
    }

    #[test]
    fn future_and_unset_clocks_are_refused() {
        let fut =
            json!({"station":"s1","parameter":"pm25","ts":"2026-03-02T07:10:00+07:00","value":1});
        let e = RawReading(&fut).validate(None, now()).unwrap_err();
        assert_eq!(field_names(&e), vec!["ts"]);
        assert!(e.errors[0].reason.contains("future"));
        let epoch0 = json!({"station":"s1","parameter":"pm25","ts":0,"value":1});
        assert!(RawReading(&epoch0).validate(None, now()).is_err());
        let no_offset =
            json!({"station":"s1","parameter":"pm25","ts":"2026-03-02T06:00:00","value":1});
        assert!(RawReading(&no_offset).validate(None, now()).is_err());
    }

    #[test]
    fn unknown_units_and_implausible_values_are_refused() {
        let v = json!({"station":"s1","parameter":"salinity","ts":"2026-03-02T06:00:00+07:00","value":3,"unit":"furlongs"});
        let e = RawReading(&v).validate(None, now()).unwrap_err();
        assert_eq!(field_names(&e), vec!["unit"]);
        let v = json!({"station":"s1","parameter":"salinity","ts":"2026-03-02T06:00:00+07:00","value":-1});
        let e = RawReading(&v).validate(None, now()).unwrap_err();
        assert_eq!(field_names(&e), vec!["value"]);
    }

    #[test]
    fn topic_station_fills_in_and_must_agree() {
        let topic = LocalId::parse("station", "s1").unwrap();
        let v = json!({"parameter":"pm10","ts":"2026-03-02T06:00:00+07:00","value":10});
        assert_eq!(
            RawReading(&v)
                .validate(Some(&topic), now())
                .unwrap()
                .station,
            topic
        );
        let v =
            json!({"station":"s2","parameter":"pm10","ts":"2026-03-02T06:00:00+07:00","value":10});
        assert!(RawReading(&v).validate(Some(&topic), now()).is_err());
    }

    #[test]
    fn payload_shapes_split_into_items() {
        assert_eq!(split_payload(&json!({"a":1})).len(), 1);
        assert_eq!(split_payload(&json!([{"a":1},{"a":2}])).len(), 2);
        assert_eq!(
            split_payload(&json!({"readings":[{"a":1},{"a":2},{"a":3}]})).len(),
            3
        );
    }
}
