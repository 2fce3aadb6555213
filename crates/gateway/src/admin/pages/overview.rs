//! The overview: today's and this week's figures, charts and what needs attention. The
//! figures are a view-model ([`Figures`]) built from the hourly rollups without any HTML, and
//! tested as such; the page only lays them out.

use super::*;
use crate::store::admin::Rollup;

const EAT: i64 = 3 * HOUR;

/// Midnight in Nairobi at or before `now`, as UTC ms.
fn nairobi_midnight(now: i64) -> i64 {
    (now + EAT).div_euclid(DAY) * DAY - EAT
}

/// Payments of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    /// Created.
    count: i64,
    /// Paid.
    paid: i64,
    /// Their amounts, KES.
    paid_kes: i64,
    /// Settled one way or another (not pending).
    settled: i64,
}

impl Totals {
    fn of<'a>(rows: impl Iterator<Item = &'a Rollup>) -> Self {
        rows.fold(Self::default(), |mut t, r| {
            t.count += r.count;
            if r.status == "paid" {
                t.paid += r.count;
                t.paid_kes += r.amount;
            }
            if r.status != "pending" {
                t.settled += r.count;
            }
            t
        })
    }

    /// Paid out of settled, as shown ("—" before anything settled).
    fn success_rate(self) -> String {
        if self.settled == 0 {
            "\u{2014}".into()
        } else {
            format!("{:.0}%", 100.0 * self.paid as f64 / self.settled as f64)
        }
    }
}

/// What the overview shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Figures {
    today: Totals,
    week: Totals,
    /// Median seconds from push to result this week.
    median_secs: Option<i64>,
    /// Payments per hour today (Nairobi time), labelled "00".."23".
    hourly: Vec<(String, i64)>,
    /// Payments per day, the last 7 days.
    daily: Vec<(String, i64)>,
    /// Paid out of settled per day (%), the last 7 days.
    daily_rate: Vec<(String, i64)>,
    /// The 8 most frequent reasons for failure this week.
    failures: Vec<(String, i64)>,
}

impl Figures {
    /// From this week's hourly rollups and settle times (seconds, count) at `now`.
    fn new(rollup: &[Rollup], times: &[(i64, i64)], now: i64) -> Self {
        let today = nairobi_midnight(now);
        let week = today - 6 * DAY;
        let from = |start: i64| rollup.iter().filter(move |r| r.hour * HOUR >= start);
        let on_day = |start: i64| rollup.iter().filter(move |r| r.hour * HOUR >= start && r.hour * HOUR < start + DAY);
        let days: Vec<i64> = (0..7).map(|d| week + d * DAY).collect();
        // "1 Dec": short enough for seven labels side by side on a phone.
        let day_label = |start: i64| nairobi(start).split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Self {
            today: Totals::of(from(today)),
            week: Totals::of(from(week)),
            median_secs: median(times),
            hourly: (0..24)
                .map(|h| {
                    let hour = (today + h * HOUR) / HOUR;
                    (format!("{h:02}"), rollup.iter().filter(|r| r.hour == hour).map(|r| r.count).sum())
                })
                .collect(),
            daily: days.iter().map(|d| (day_label(*d), on_day(*d).map(|r| r.count).sum())).collect(),
            daily_rate: days
                .iter()
                .map(|d| {
                    let t = Totals::of(on_day(*d));
                    (day_label(*d), if t.settled == 0 { 0 } else { 100 * t.paid / t.settled })
                })
                .collect(),
            failures: failures(rollup),
        }
    }
}

/// The median of (seconds, count) pairs.
fn median(times: &[(i64, i64)]) -> Option<i64> {
    let total: i64 = times.iter().map(|(_, n)| n).sum();
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut seen = 0;
    sorted
        .iter()
        .find(|(_, n)| {
            seen += n;
            seen * 2 >= total
        })
        .map(|(secs, _)| *secs)
}

/// Failed and expired payments by reason (result code and its meaning), most first, at most 8.
fn failures(rollup: &[Rollup]) -> Vec<(String, i64)> {
    let mut failures: Vec<(String, i64)> = Vec::new();
    for r in rollup.iter().filter(|r| r.status == "failed" || r.status == "expired") {
        let label = match (&r.result_code, r.status.as_str()) {
            (_, "expired") => "expired (no answer)".to_owned(),
            (Some(code), _) => {
                let rc = daraja::ResultCode::from_wire(code);
                match rc.info() {
                    // The owner's words ("the customer cancelled…"), not the customer's ("you…").
                    Some(info) => format!("{code}: {}", info.meaning.split(" (").next().unwrap_or_default()),
                    None => code.clone(),
                }
            }
            (None, _) => "unknown".to_owned(),
        };
        match failures.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += r.count,
            None => failures.push((label, r.count)),
        }
    }
    failures.sort_by_key(|f| std::cmp::Reverse(f.1));
    failures.truncate(8);
    failures
}

/// `1 payment`, `2 payments`.
fn plural(count: i64, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

/// A tile's class: red only when something is waiting.
fn tile_class(count: i64) -> &'static str {
    if count > 0 { "tile attention" } else { "tile" }
}

pub(in crate::admin) async fn overview(State(gateway): State<Gateway>, staff: Staff) -> Response {
    let now = gateway.now();
    let week = nairobi_midnight(now) - 6 * DAY;
    let store = gateway.store();
    let (rollup, times, attention) =
        match tokio::try_join!(store.rollup(week, now), store.settle_times(week, now), store.attention_counts()) {
            Ok(r) => r,
            Err(e) => return store_down(&e),
        };
    let f = Figures::new(&rollup, &times, now);
    let (flagged, orphans, dead) = attention;
    let kes_of = |t: Totals| kes(u32::try_from(t.paid_kes).unwrap_or(u32::MAX));
    layout(
        Some(&staff),
        "Overview",
        "/admin",
        html! {
            h1 { "Overview" }
            div class="tiles" {
                div class="tile" { span { "Today" } strong { (plural(f.today.count, "payment")) } small { (kes_of(f.today)) " paid" } }
                div class="tile" { span { "This week" } strong { (plural(f.week.count, "payment")) } small { (kes_of(f.week)) " paid" } }
                div class="tile" { span { "Success rate" } strong { (f.today.success_rate()) } small { "today; week " (f.week.success_rate()) } }
                div class="tile" { span { "Push to result" } strong { (f.median_secs.map_or("\u{2014}".to_owned(), |s| format!("{s} s"))) } small { "median, this week" } }
                a class=(tile_class(flagged + orphans)) href="/admin/review" { span { "Needs review" } strong { (flagged + orphans) } small { (plural(flagged, "payment")) ", " (plural(orphans, "callback")) } }
                a class=(tile_class(dead)) href="/admin/webhooks?status=dead" { span { "Webhook failures" } strong { (dead) } small { "dead letters" } }
            }
            div class="charts" {
            (charts::bars("Payments per hour today (Nairobi time)", &f.hourly, 3, charts::Scale::Largest))
            (charts::bars("Payments per day, last 7 days", &f.daily, 1, charts::Scale::Largest))
            (charts::bars("Success rate per day (%)", &f.daily_rate, 1, charts::Scale::Percent))
            (charts::ranking("Failures by reason, last 7 days", &f.failures))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hour: i64, status: &str, code: Option<&str>, count: i64, amount: i64) -> Rollup {
        Rollup { hour, status: status.into(), result_code: code.map(str::to_owned), count, amount }
    }

    #[test]
    fn only_a_count_above_zero_is_shown_as_needing_attention() {
        assert_eq!((tile_class(0), tile_class(2)), ("tile", "tile attention"));
    }

    #[test]
    fn today_begins_at_midnight_in_nairobi() {
        // 2026-12-07 20:59 UTC is 23:59 in Nairobi; 21:00 UTC is the next day there.
        let before = 1_796_677_140_000;
        assert_eq!(nairobi_midnight(before), 1_796_590_800_000);
        assert_eq!(nairobi_midnight(before + 60_000), 1_796_677_200_000);
    }

    #[test]
    fn figures_count_today_and_the_week_and_rank_failures() {
        let now = 1_796_677_140_000; // 23:59 in Nairobi
        let today = nairobi_midnight(now) / HOUR;
        let rollup = [
            row(today + 10, "paid", Some("0"), 3, 300),
            row(today + 10, "failed", Some("1032"), 2, 0),
            row(today + 11, "pending", None, 1, 0),
            row(today - 30, "paid", Some("0"), 4, 400),
            row(today - 30, "expired", None, 1, 0),
            row(today - 30, "failed", Some("1032"), 1, 0),
        ];
        let f = Figures::new(&rollup, &[(5, 3), (9, 1), (30, 2)], now);
        assert_eq!(f.today, Totals { count: 6, paid: 3, paid_kes: 300, settled: 5 });
        assert_eq!(f.week, Totals { count: 12, paid: 7, paid_kes: 700, settled: 11 });
        assert_eq!((f.today.success_rate(), f.week.success_rate()), ("60%".to_owned(), "64%".to_owned()));
        assert_eq!(f.median_secs, Some(5));
        assert_eq!(f.hourly.len(), 24);
        assert_eq!(f.hourly[10], ("10".to_owned(), 5));
        // 30 hours before today's midnight is two days ago.
        assert_eq!(f.daily.iter().map(|d| d.1).collect::<Vec<_>>(), [0, 0, 0, 0, 6, 0, 6]);
        assert_eq!((f.daily_rate[4].1, f.daily_rate[6].1), (66, 60));
        assert_eq!(f.failures[0].1, 3);
        assert_eq!(f.failures[0].0, "1032: the customer cancelled or dismissed the prompt", "the owner's words");
        assert_eq!(f.failures[1], ("expired (no answer)".to_owned(), 1));
    }

    #[test]
    fn nothing_settled_shows_a_dash_not_a_rate() {
        assert_eq!(Totals::default().success_rate(), "\u{2014}");
        assert_eq!(median(&[]), None);
    }
}
