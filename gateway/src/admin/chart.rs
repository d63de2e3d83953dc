//! Charts of counts over time, laid out here and drawn by `_chart.html` as
//! inline SVG: grouped bars per time bucket (one colour per series), a
//! y axis with round ticks, time labels in the site's zone under the x
//! axis, a legend, and each bar titled with its series, count and time span
//! (the hover value). Written here rather than with a plotting crate
//! because the hover title per bar and the page's auto-escaping templates
//! are what the page needs, and plotters' SVG backend offers neither; the
//! layout is plain arithmetic, tested below.

use serde::Serialize;

/// One series: its name, CSS class (its colour) and a count per bucket.
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub values: &'a [u64],
}

/// A chart ready to draw; every coordinate already written with one
/// decimal.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub label: String,
    pub unit: String,
    /// Left, top, right, bottom of the plot area.
    pub plot: [String; 4],
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub bars: Vec<Bar>,
    pub legend: Vec<Legend>,
}

#[derive(Debug, Serialize)]
pub struct Tick {
    pub at: String,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub class: String,
    pub title: String,
}

#[derive(Debug, Serialize)]
pub struct Legend {
    pub x: String,
    pub class: String,
    pub name: String,
}

const LEFT: f64 = 46.0;
const TOP: f64 = 10.0;
const RIGHT: f64 = 10.0;
const BOTTOM: f64 = 40.0;

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `max` (at least 1).
pub fn nice_max(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * step >= max {
                return m * step;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// `series` over buckets of `bucket_ms` starting at `start_ms`, with time
/// labels written by `label` (a bucket's start) and bar titles naming the
/// span by `span` (its start and end).
pub fn chart(
    series: &[Series<'_>],
    (width, height): (u32, u32),
    label: &str,
    unit: &str,
    start_ms: i64,
    bucket_ms: i64,
    time: &dyn Fn(i64) -> String,
) -> Chart {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let top = nice_max(max.max(1));
    let (w, h) = (f64::from(width), f64::from(height));
    let plot_w = w - LEFT - RIGHT;
    let plot_h = h - TOP - BOTTOM;
    let bottom = TOP + plot_h;
    let slot = plot_w / n.max(1) as f64;
    let bar_w = ((slot - 2.0) / series.len().max(1) as f64).max(0.5);
    let mut bars = Vec::new();
    for i in 0..n {
        let from = start_ms + i as i64 * bucket_ms;
        let span = format!("{} – {}", time(from), time(from + bucket_ms));
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0);
            let bh = v as f64 / top as f64 * plot_h;
            bars.push(Bar {
                x: f1(LEFT + i as f64 * slot + 1.0 + k as f64 * bar_w),
                y: f1(bottom - bh),
                width: f1(bar_w),
                height: f1(bh),
                class: s.class.to_string(),
                title: format!("{}: {v} {unit}, {span}", s.name),
            });
        }
    }
    let mut marks = vec![0, top / 2, top];
    marks.dedup();
    let y_ticks = marks
        .into_iter()
        .map(|t| Tick {
            at: f1(bottom - t as f64 / top as f64 * plot_h),
            text: t.to_string(),
        })
        .collect();
    // At most 6 time labels, on bucket edges.
    let every = n.div_ceil(6).max(1);
    let x_ticks = (0..=n)
        .step_by(every)
        .map(|i| Tick {
            at: f1(LEFT + i as f64 * slot),
            text: time(start_ms + i as i64 * bucket_ms),
        })
        .collect();
    let legend = series
        .iter()
        .enumerate()
        .map(|(k, s)| Legend {
            x: f1(LEFT + k as f64 * 110.0),
            class: s.class.to_string(),
            name: s.name.to_string(),
        })
        .collect();
    Chart {
        width,
        height,
        label: label.to_string(),
        unit: unit.to_string(),
        plot: [f1(LEFT), f1(TOP), f1(w - RIGHT), f1(bottom)],
        y_ticks,
        x_ticks,
        bars,
        legend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hhmm(ms: i64) -> String {
        format!("{:02}:{:02}", ms / 3_600_000 % 24, ms / 60_000 % 60)
    }

    #[test]
    fn the_y_axis_ends_on_a_round_number_at_or_above_the_largest_count() {
        assert_eq!(
            [0, 1, 3, 7, 10, 11, 180, 501].map(nice_max),
            [1, 1, 5, 10, 10, 20, 200, 1000]
        );
    }

    #[test]
    fn bars_are_grouped_per_bucket_scaled_to_the_axis_and_titled_with_their_span() {
        let received = [2, 0, 5];
        let failed = [0, 1, 0];
        let c = chart(
            &[
                Series {
                    name: "received",
                    class: "s-received",
                    values: &received,
                },
                Series {
                    name: "failed",
                    class: "s-failed",
                    values: &failed,
                },
            ],
            (346, 150),
            "lab",
            "messages",
            0,
            300_000,
            &hhmm,
        );
        assert_eq!(c.bars.len(), 6, "one bar per series and bucket");
        // The plot is 100 px tall and the axis ends at 5: 5 reaches the top.
        assert_eq!(c.bars[4].height, "100.0");
        assert_eq!(c.bars[4].y, "10.0");
        assert_eq!(c.bars[0].height, "40.0");
        assert_eq!(c.bars[4].title, "received: 5 messages, 00:10 – 00:15");
        assert_eq!(c.bars[3].title, "failed: 1 messages, 00:05 – 00:10");
        let ticks: Vec<&str> = c.y_ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ticks, ["0", "2", "5"]);
        let times: Vec<&str> = c.x_ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(times, ["00:00", "00:05", "00:10", "00:15"]);
        assert_eq!(c.legend.len(), 2);
    }

    #[test]
    fn an_axis_up_to_one_has_no_tick_twice() {
        let v = [1u64, 0];
        let c = chart(
            &[Series {
                name: "x",
                class: "s",
                values: &v,
            }],
            (200, 100),
            "x",
            "m",
            0,
            60_000,
            &hhmm,
        );
        let ticks: Vec<&str> = c.y_ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ticks, ["0", "1"]);
    }

    #[test]
    fn many_buckets_get_at_most_seven_time_labels() {
        let v = [1u64; 28];
        let c = chart(
            &[Series {
                name: "x",
                class: "s",
                values: &v,
            }],
            (640, 180),
            "x",
            "messages",
            0,
            6 * 3_600_000,
            &hhmm,
        );
        assert!(c.x_ticks.len() <= 7, "{}", c.x_ticks.len());
    }
}
