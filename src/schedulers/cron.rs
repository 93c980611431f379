//! When a Nightly scheduler fires: the next time a set of cron fields matches, in the
//! master's local time, as Buildbot computes it with croniter.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike,
};

use crate::config::build::{CronField, CronTimes};

/// How far ahead to look before deciding the fields never match (`dayOfMonth=31` with
/// `month=2`): every combination recurs within a leap-year cycle.
const HORIZON_DAYS: i64 = 366 * 8;

impl CronField {
    fn matches(&self, value: u32) -> bool {
        match self {
            CronField::Any => true,
            CronField::Values(values) => values.contains(&value),
        }
    }
}

/// Whether `time` (a whole minute or not) is one the fields describe.
pub fn matches(times: &CronTimes, time: NaiveDateTime) -> bool {
    times.month.matches(time.month())
        && day_matches(times, time.date())
        && times.hour.matches(time.hour())
        && times.minute.matches(time.minute())
}

/// cron's rule, which croniter keeps: when both the day of the month and the day of the
/// week are restricted, either one matching is enough. Buildbot's day 0 is Monday.
fn day_matches(times: &CronTimes, date: NaiveDate) -> bool {
    let by_month = times.day_of_month.matches(date.day());
    let by_week = times
        .day_of_week
        .matches(date.weekday().num_days_from_monday());
    match (&times.day_of_month, &times.day_of_week) {
        (CronField::Values(_), CronField::Values(_)) => by_month || by_week,
        _ => by_month && by_week,
    }
}

/// The first whole minute strictly after `after` that the fields match, in wall-clock
/// time; `None` when they never do.
pub fn next_naive(times: &CronTimes, after: NaiveDateTime) -> Option<NaiveDateTime> {
    let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
    let limit = start + Duration::days(HORIZON_DAYS);
    let mut t = start;
    while t < limit {
        if !times.month.matches(t.month()) {
            let (year, month) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            t = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
        } else if !day_matches(times, t.date()) {
            t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
        } else if !times.hour.matches(t.hour()) {
            t = t.with_minute(0)? + Duration::hours(1);
        } else if !times.minute.matches(t.minute()) {
            t += Duration::minutes(1);
        } else {
            return Some(t);
        }
    }
    None
}

/// The next firing strictly after `after`, in `after`'s time zone. A wall-clock time that
/// a daylight-saving jump skips is passed over; one that occurs twice fires the first time.
pub fn next_fire<Tz: TimeZone>(times: &CronTimes, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    let zone = after.timezone();
    let mut wall = after.naive_local();
    loop {
        wall = next_naive(times, wall)?;
        let candidate = match zone.from_local_datetime(&wall) {
            LocalResult::Single(t) => t,
            LocalResult::Ambiguous(first, _) => first,
            LocalResult::None => continue,
        };
        if candidate > *after {
            return Some(candidate);
        }
    }
}

/// [`next_fire`] in the master's local time, on timestamps as the database keeps them.
pub fn next_fire_local(times: &CronTimes, after: f64) -> Option<f64> {
    let after = local_time(after)?;
    next_fire(times, &after).map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// Whether the local time at `timestamp` matches the fields (Nightly's `force_at_*`).
pub fn matches_local(times: &CronTimes, timestamp: f64) -> bool {
    local_time(timestamp).is_some_and(|t| matches(times, t.naive_local()))
}

fn local_time(timestamp: f64) -> Option<DateTime<chrono::Local>> {
    let millis = (timestamp * 1000.0).floor() as i64;
    chrono::Local.timestamp_millis_opt(millis).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn field(values: &[u32]) -> CronField {
        CronField::Values(values.to_vec())
    }

    /// Nightly's defaults: minute 0 of every hour.
    fn times() -> CronTimes {
        CronTimes {
            minute: field(&[0]),
            hour: CronField::Any,
            day_of_month: CronField::Any,
            month: CronField::Any,
            day_of_week: CronField::Any,
        }
    }

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// Expected values are croniter's, Buildbot's cron library, from the same start: a
    /// Wednesday, 30 seconds before February.
    #[test]
    fn next_times_agree_with_croniter() {
        let start = at("2024-01-31 23:59:30");
        let cases = [
            (times(), "2024-02-01 00:00:00"),
            (
                CronTimes {
                    minute: field(&[30]),
                    hour: field(&[3]),
                    ..times()
                },
                "2024-02-01 03:30:00",
            ),
            // Buildbot's 6 is Sunday (cron's 0), its 0 Monday (cron's 1).
            (
                CronTimes {
                    hour: field(&[3]),
                    day_of_week: field(&[6]),
                    ..times()
                },
                "2024-02-04 03:00:00",
            ),
            (
                CronTimes {
                    hour: field(&[3]),
                    day_of_week: field(&[0]),
                    ..times()
                },
                "2024-02-05 03:00:00",
            ),
            (
                CronTimes {
                    minute: field(&[15, 45]),
                    hour: field(&[9]),
                    ..times()
                },
                "2024-02-01 09:15:00",
            ),
            // February has no 31st.
            (
                CronTimes {
                    hour: field(&[0]),
                    day_of_month: field(&[31]),
                    ..times()
                },
                "2024-03-31 00:00:00",
            ),
            // Both days restricted: either matches (Friday the 2nd comes before the 13th).
            (
                CronTimes {
                    hour: field(&[12]),
                    day_of_month: field(&[13]),
                    day_of_week: field(&[4]),
                    ..times()
                },
                "2024-02-02 12:00:00",
            ),
            (
                CronTimes {
                    hour: field(&[0]),
                    day_of_month: field(&[29]),
                    month: field(&[2]),
                    ..times()
                },
                "2024-02-29 00:00:00",
            ),
            (
                CronTimes {
                    hour: field(&[3]),
                    month: field(&[3]),
                    ..times()
                },
                "2024-03-01 03:00:00",
            ),
        ];
        for (times, expected) in cases {
            assert_eq!(
                next_naive(&times, start),
                Some(at(expected)),
                "for {times:?}"
            );
        }
    }

    #[test]
    fn the_next_time_is_strictly_later() {
        let daily = CronTimes {
            hour: field(&[3]),
            ..times()
        };
        assert_eq!(
            next_naive(&daily, at("2024-03-10 03:00:00")),
            Some(at("2024-03-11 03:00:00"))
        );
        assert_eq!(
            next_naive(&daily, at("2024-03-10 02:59:59")),
            Some(at("2024-03-10 03:00:00"))
        );
    }

    #[test]
    fn fields_that_never_match_give_none() {
        let never = CronTimes {
            day_of_month: field(&[31]),
            month: field(&[2]),
            ..times()
        };
        assert_eq!(next_naive(&never, at("2024-01-01 00:00:00")), None);
    }

    #[test]
    fn zones_shift_the_instant_not_the_wall_clock() {
        let daily = CronTimes {
            hour: field(&[3]),
            ..times()
        };
        let paris = FixedOffset::east_opt(3600).unwrap();
        let after = paris
            .from_local_datetime(&at("2024-05-01 12:00:00"))
            .unwrap();
        let next = next_fire(&daily, &after).unwrap();
        assert_eq!(next.naive_local(), at("2024-05-02 03:00:00"));
        assert_eq!(
            next.with_timezone(&Utc).naive_utc(),
            at("2024-05-02 02:00:00")
        );
    }

    #[test]
    fn force_at_matches_the_minute() {
        let sunday_noon = CronTimes {
            hour: field(&[12]),
            day_of_week: field(&[6]),
            ..times()
        };
        assert!(matches(&sunday_noon, at("2024-02-04 12:00:00")));
        assert!(!matches(&sunday_noon, at("2024-02-05 12:00:00")));
        assert!(!matches(&sunday_noon, at("2024-02-04 12:01:00")));
    }
}
