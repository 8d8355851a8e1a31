//! Reporting periods in DHIS2's period syntax (`20261130`, `2026W48`, `202611`, `2026Q4`,
//! `2026S2`, `2026`), the dates they cover in Vietnam time, and the two ways Vietnamese
//! reporting cuts them: calendar periods (the statistics office) and the administrative
//! reporting periods of Decree 09/2019/NĐ-CP, which close on the 14th (a monthly report covers
//! the 15th of the month before to the 14th of its month; a year, 15 December to 14 December).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FieldError;

/// How often an indicator is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Day,
    Week,
    Month,
    Quarter,
    #[serde(alias = "six-month", alias = "sixmonth")]
    SixMonth,
    Year,
}

impl Frequency {
    pub const ALL: [Frequency; 6] = [
        Frequency::Day,
        Frequency::Week,
        Frequency::Month,
        Frequency::Quarter,
        Frequency::SixMonth,
        Frequency::Year,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Day => "day",
            Frequency::Week => "week",
            Frequency::Month => "month",
            Frequency::Quarter => "quarter",
            Frequency::SixMonth => "six_month",
            Frequency::Year => "year",
        }
    }

    /// What a sender writes for a period of this frequency, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Frequency::Day => "20261130",
            Frequency::Week => "2026W48",
            Frequency::Month => "202611",
            Frequency::Quarter => "2026Q4",
            Frequency::SixMonth => "2026S2",
            Frequency::Year => "2026",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let t = s.trim().to_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == t || (t == "sixmonth" && *f == Frequency::SixMonth))
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    format!("{s:?} is not day, week, month, quarter, six_month or year"),
                )
            })
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a period's dates fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Calendar months, quarters and years (the statistics office's figures).
    #[default]
    Calendar,
    /// Decree 09/2019/NĐ-CP reporting periods: months, quarters, halves and years close on
    /// the 14th of their last month and open on the 15th of the month before their first.
    /// Days and weeks are as in the calendar.
    Reporting,
}

/// One reporting period. Periods of one frequency order by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Day(NaiveDate),
    /// An ISO 8601 week (Monday to Sunday), of its ISO week-numbering year.
    Week {
        year: i32,
        week: u32,
    },
    Month {
        year: i32,
        month: u32,
    },
    Quarter {
        year: i32,
        quarter: u32,
    },
    SixMonth {
        year: i32,
        half: u32,
    },
    Year(i32),
}

/// Years a period may name: wide enough for any real figure, narrow enough that date
/// arithmetic never overflows.
const YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

/// Vietnam's offset from UTC (no daylight saving).
pub fn vietnam() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("+07:00 is a valid offset")
}

/// The date in Vietnam at `t`.
pub fn vietnam_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&vietnam()).date_naive()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    // Callers pass months 1-12 and days valid for them within YEARS.
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

fn last_of_month(y: i32, m: u32) -> NaiveDate {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    date(ny, nm, 1) - Duration::days(1)
}

/// The 14th of month `m` of year `y`, months counted past December into the next year.
fn fourteenth(y: i32, m: i32) -> NaiveDate {
    let months = y * 12 + (m - 1);
    date(months.div_euclid(12), months.rem_euclid(12) as u32 + 1, 14)
}

impl Period {
    pub fn frequency(&self) -> Frequency {
        match self {
            Period::Day(_) => Frequency::Day,
            Period::Week { .. } => Frequency::Week,
            Period::Month { .. } => Frequency::Month,
            Period::Quarter { .. } => Frequency::Quarter,
            Period::SixMonth { .. } => Frequency::SixMonth,
            Period::Year(_) => Frequency::Year,
        }
    }

    /// Parses DHIS2's period syntax; `field` names the input in the error.
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| {
            FieldError::new(
                field,
                format!(
                    "{s:?} is not a period{why}: write a day 20261130, a week 2026W48, a month \
                     202611, a quarter 2026Q4, a half 2026S2 or a year 2026"
                ),
            )
        };
        let s = s.trim();
        if !s.is_ascii() || s.len() < 4 {
            return Err(bad(""));
        }
        let (y, rest) = s.split_at(4);
        let year: i32 = y.parse().map_err(|_| bad(""))?;
        if !YEARS.contains(&year) {
            return Err(bad(" (the year is out of range)"));
        }
        let number = |t: &str, max: u32| -> Result<u32, FieldError> {
            match t.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) && t.len() <= 2 => Ok(n),
                _ => Err(bad(&format!(
                    " (the number after the year must be 1-{max})"
                ))),
            }
        };
        let p = match rest.as_bytes().first() {
            None => Period::Year(year),
            Some(b'W') => {
                let week = number(&rest[1..], 53)?;
                if week > iso_weeks(year) {
                    return Err(bad(&format!(" ({year} has {} ISO weeks)", iso_weeks(year))));
                }
                Period::Week { year, week }
            }
            Some(b'Q') => Period::Quarter {
                year,
                quarter: number(&rest[1..], 4)?,
            },
            Some(b'S') => Period::SixMonth {
                year,
                half: number(&rest[1..], 2)?,
            },
            Some(b'0'..=b'9') if rest.len() == 2 => Period::Month {
                year,
                month: number(rest, 12)?,
            },
            Some(b'0'..=b'9') if rest.len() == 4 => {
                let (m, d) = rest.split_at(2);
                let (m, d) = (number(m, 12)?, number(d, 31)?);
                Period::Day(
                    NaiveDate::from_ymd_opt(year, m, d).ok_or_else(|| bad(" (no such date)"))?,
                )
            }
            _ => return Err(bad("")),
        };
        Ok(p)
    }

    /// Parses a period that must be of `frequency`.
    pub fn parse_for(field: &str, s: &str, frequency: Frequency) -> Result<Self, FieldError> {
        let p = Self::parse(field, s)?;
        if p.frequency() != frequency {
            return Err(FieldError::new(
                field,
                format!(
                    "{s} is a {} period; this indicator is reported by {frequency} (e.g. {})",
                    p.frequency(),
                    frequency.example()
                ),
            ));
        }
        Ok(p)
    }

    /// The first and last day the period covers (inclusive), in Vietnam's calendar.
    pub fn dates(&self, basis: Basis) -> (NaiveDate, NaiveDate) {
        let calendar = match *self {
            Period::Day(d) => (d, d),
            Period::Week { year, week } => {
                let monday =
                    NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).unwrap_or(NaiveDate::MIN);
                (monday, monday + Duration::days(6))
            }
            Period::Month { year, month } => (date(year, month, 1), last_of_month(year, month)),
            Period::Quarter { year, quarter } => {
                let m = (quarter - 1) * 3 + 1;
                (date(year, m, 1), last_of_month(year, m + 2))
            }
            Period::SixMonth { year, half } => {
                let m = (half - 1) * 6 + 1;
                (date(year, m, 1), last_of_month(year, m + 5))
            }
            Period::Year(year) => (date(year, 1, 1), date(year, 12, 31)),
        };
        match (basis, self) {
            (Basis::Calendar, _) | (_, Period::Day(_) | Period::Week { .. }) => calendar,
            (Basis::Reporting, _) => {
                let (first, last) = calendar;
                let open = fourteenth(first.year(), first.month() as i32 - 1) + Duration::days(1);
                (open, fourteenth(last.year(), last.month() as i32))
            }
        }
    }

    /// The period of `frequency` holding day `d`.
    pub fn containing(d: NaiveDate, frequency: Frequency, basis: Basis) -> Self {
        // Past the 14th a reporting month, quarter, half or year is already the next one.
        let d = match (basis, frequency) {
            (Basis::Reporting, Frequency::Month | Frequency::Quarter)
            | (Basis::Reporting, Frequency::SixMonth | Frequency::Year)
                if d.day() > 14 =>
            {
                last_of_month(d.year(), d.month()) + Duration::days(1)
            }
            _ => d,
        };
        let (year, month) = (d.year(), d.month());
        match frequency {
            Frequency::Day => Period::Day(d),
            Frequency::Week => {
                let w = d.iso_week();
                Period::Week {
                    year: w.year(),
                    week: w.week(),
                }
            }
            Frequency::Month => Period::Month { year, month },
            Frequency::Quarter => Period::Quarter {
                year,
                quarter: (month - 1) / 3 + 1,
            },
            Frequency::SixMonth => Period::SixMonth {
                year,
                half: (month - 1) / 6 + 1,
            },
            Frequency::Year => Period::Year(year),
        }
    }

    /// The period after this one.
    pub fn next(&self) -> Self {
        self.step(1)
    }

    /// The period before this one.
    pub fn prev(&self) -> Self {
        self.step(-1)
    }

    fn step(&self, by: i32) -> Self {
        let months = |year: i32, index: u32, per_year: u32| {
            let n = year * per_year as i32 + (index as i32 - 1) + by;
            (
                n.div_euclid(per_year as i32),
                n.rem_euclid(per_year as i32) as u32 + 1,
            )
        };
        match *self {
            Period::Day(d) => Period::Day(d + Duration::days(by.into())),
            Period::Week { .. } => {
                let (monday, _) = self.dates(Basis::Calendar);
                Self::containing(
                    monday + Duration::weeks(by.into()),
                    Frequency::Week,
                    Basis::Calendar,
                )
            }
            Period::Month { year, month } => {
                let (year, month) = months(year, month, 12);
                Period::Month { year, month }
            }
            Period::Quarter { year, quarter } => {
                let (year, quarter) = months(year, quarter, 4);
                Period::Quarter { year, quarter }
            }
            Period::SixMonth { year, half } => {
                let (year, half) = months(year, half, 2);
                Period::SixMonth { year, half }
            }
            Period::Year(y) => Period::Year(y + by),
        }
    }

    /// The `n` periods ending with this one, oldest first.
    pub fn last_n(&self, n: usize) -> Vec<Period> {
        let mut out = Vec::with_capacity(n);
        let mut p = *self;
        for _ in 0..n {
            out.push(p);
            p = p.prev();
        }
        out.reverse();
        out
    }

    /// Does this period lie wholly within `outer` (on the same basis)?
    pub fn within(&self, outer: &Period, basis: Basis) -> bool {
        let (a, b) = self.dates(basis);
        let (c, d) = outer.dates(basis);
        c <= a && b <= d
    }

    /// Days the period covers.
    pub fn days(&self, basis: Basis) -> i64 {
        let (a, b) = self.dates(basis);
        (b - a).num_days() + 1
    }

    /// The year a cumulative (*lũy kế*) value of this period counts from.
    pub fn year(&self) -> i32 {
        match *self {
            Period::Day(d) => d.year(),
            Period::Week { year, .. }
            | Period::Month { year, .. }
            | Period::Quarter { year, .. }
            | Period::SixMonth { year, .. }
            | Period::Year(year) => year,
        }
    }

    /// The day past which a value for this period is late: `grace_days` after it closes.
    pub fn deadline(&self, basis: Basis, grace_days: u32) -> NaiveDate {
        self.dates(basis).1 + Duration::days(grace_days.into())
    }
}

/// ISO weeks in an ISO week-numbering year: 52, or 53 when 28 December falls in week 53.
fn iso_weeks(year: i32) -> u32 {
    date(year, 12, 28).iso_week().week()
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day(d) => write!(f, "{}", d.format("%Y%m%d")),
            Period::Week { year, week } => write!(f, "{year}W{week}"),
            Period::Month { year, month } => write!(f, "{year}{month:02}"),
            Period::Quarter { year, quarter } => write!(f, "{year}Q{quarter}"),
            Period::SixMonth { year, half } => write!(f, "{year}S{half}"),
            Period::Year(y) => write!(f, "{y}"),
        }
    }
}

impl FromStr for Period {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::parse("period", s)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Period::parse("period", &s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        Period::parse("period", s).unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn every_dhis2_form_parses_and_prints_back() {
        for (s, f) in [
            ("20261130", Frequency::Day),
            ("2026W48", Frequency::Week),
            ("202611", Frequency::Month),
            ("2026Q4", Frequency::Quarter),
            ("2026S2", Frequency::SixMonth),
            ("2026", Frequency::Year),
        ] {
            assert_eq!(p(s).frequency(), f, "{s}");
            assert_eq!(p(s).to_string(), s);
        }
        // DHIS2 writes weeks without padding; a padded week is the same week.
        assert_eq!(p("2026W05"), p("2026W5"));
        assert_eq!(p("2026W5").to_string(), "2026W5");
    }

    #[test]
    fn bad_periods_are_refused_with_the_field_and_the_forms() {
        for bad in [
            "",
            "26",
            "2026W0",
            "2026W54",
            "2025W53",
            "202613",
            "2026Q5",
            "2026S3",
            "20260230",
            "2026-11",
            "2026M11",
            "２０２６",
            "99999",
            "2026Q",
            "2026W123",
        ] {
            let e = Period::parse("values[2].period", bad).unwrap_err();
            assert_eq!(e.field, "values[2].period", "{bad}");
            assert!(e.reason.contains("2026Q4"), "{bad}: {}", e.reason);
        }
        // 2026 has 53 ISO weeks (28 Dec 2026 is a Monday of week 53); 2025 has 52.
        assert_eq!(p("2026W53").dates(Basis::Calendar).1, d("2027-01-03"));
    }

    #[test]
    fn a_value_must_match_its_indicators_frequency() {
        assert!(Period::parse_for("period", "202611", Frequency::Month).is_ok());
        let e = Period::parse_for("period", "2026Q4", Frequency::Month).unwrap_err();
        assert!(
            e.reason.contains("quarter") && e.reason.contains("202611"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn calendar_dates_of_each_kind() {
        let c = Basis::Calendar;
        assert_eq!(p("2026W48").dates(c), (d("2026-11-23"), d("2026-11-29")));
        assert_eq!(p("2024W1").dates(c), (d("2024-01-01"), d("2024-01-07")));
        assert_eq!(p("2026W1").dates(c), (d("2025-12-29"), d("2026-01-04")));
        assert_eq!(p("202602").dates(c), (d("2026-02-01"), d("2026-02-28")));
        assert_eq!(p("202402").dates(c), (d("2024-02-01"), d("2024-02-29")));
        assert_eq!(p("2026Q4").dates(c), (d("2026-10-01"), d("2026-12-31")));
        assert_eq!(p("2026S1").dates(c), (d("2026-01-01"), d("2026-06-30")));
        assert_eq!(p("2026").days(c), 365);
    }

    #[test]
    fn reporting_periods_close_on_the_fourteenth() {
        let r = Basis::Reporting;
        // Decree 09/2019: a month from the 15th of the month before to its 14th.
        assert_eq!(p("202611").dates(r), (d("2026-10-15"), d("2026-11-14")));
        assert_eq!(p("202601").dates(r), (d("2025-12-15"), d("2026-01-14")));
        // A quarter: the 15th of the month before it to the 14th of its last month.
        assert_eq!(p("2026Q1").dates(r), (d("2025-12-15"), d("2026-03-14")));
        // The 6-month report: 15 December to 14 June; the year: 15 December to 14 December.
        assert_eq!(p("2026S1").dates(r), (d("2025-12-15"), d("2026-06-14")));
        assert_eq!(p("2026").dates(r), (d("2025-12-15"), d("2026-12-14")));
        // Days and weeks are as in the calendar.
        assert_eq!(p("20261130").dates(r), p("20261130").dates(Basis::Calendar));
        // 20 December 2026 is already in the reporting year 2027, and its January.
        assert_eq!(
            Period::containing(d("2026-12-20"), Frequency::Year, r),
            p("2027")
        );
        assert_eq!(
            Period::containing(d("2026-12-20"), Frequency::Month, r),
            p("202701")
        );
        assert_eq!(
            Period::containing(d("2026-11-14"), Frequency::Month, r),
            p("202611")
        );
        assert_eq!(
            Period::containing(d("2026-12-20"), Frequency::Month, Basis::Calendar),
            p("202612")
        );
    }

    #[test]
    fn periods_step_across_years_and_order_by_time() {
        assert_eq!(p("202612").next(), p("202701"));
        assert_eq!(p("202601").prev(), p("202512"));
        assert_eq!(p("2026Q1").prev(), p("2025Q4"));
        assert_eq!(p("2026S2").next(), p("2027S1"));
        assert_eq!(p("2026W53").next(), p("2027W1"));
        assert_eq!(p("2027W1").prev(), p("2026W53"));
        assert_eq!(p("20261231").next(), p("20270101"));
        let last = p("202611").last_n(12);
        assert_eq!(last.first(), Some(&p("202512")));
        assert_eq!(last.last(), Some(&p("202611")));
        assert!(last.windows(2).all(|w| w[0] < w[1]));
        assert!(p("202611").within(&p("2026"), Basis::Calendar));
        assert!(!p("2026W1").within(&p("2026"), Basis::Calendar));
        assert_eq!(p("2026Q4").deadline(Basis::Calendar, 10), d("2027-01-10"));
    }

    #[test]
    fn vietnam_dates_are_seven_hours_ahead() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(vietnam_date(t), d("2026-12-01"));
    }
}
