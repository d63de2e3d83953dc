//! A bar chart of counts laid out as the statistics page draws it in
//! inline SVG (`_chart.html`): each bar's box in pixels, scaled to the
//! largest count, with one decimal as the SVG is written.

use serde::Serialize;

/// A chart `width` × `height` pixels, its label and its bars.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub label: String,
    pub bars: Vec<Bar>,
}

/// One bar: its box (already written with one decimal) and its count.
#[derive(Debug, Serialize)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub value: u64,
}

/// `values` as bars side by side, the largest reaching 2 pixels below the
/// top.
pub fn bars(values: &[u64], width: u32, height: u32, label: &str) -> Chart {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(1) as f64;
    let bw = f64::from(width) / n;
    let bars = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let bh = (*v as f64 / max as f64) * f64::from(height - 2);
            Bar {
                x: format!("{:.1}", i as f64 * bw + 0.5),
                y: format!("{:.1}", f64::from(height) - bh),
                width: format!("{:.1}", (bw - 1.0).max(0.5)),
                height: format!("{bh:.1}"),
                value: *v,
            }
        })
        .collect();
    Chart {
        width,
        height,
        label: label.to_string(),
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_one_bar_per_value_and_the_largest_is_the_tallest() {
        let c = bars(&[1, 0, 5], 90, 30, "x");
        assert_eq!(c.bars.len(), 3);
        let heights: Vec<&str> = c.bars.iter().map(|b| b.height.as_str()).collect();
        assert_eq!(heights, ["5.6", "0.0", "28.0"]);
        assert_eq!(c.bars[2].y, "2.0");
    }
}
