//! What every chart of vanbench shares: the line colours, in order, and how a drawing error
//! becomes an error of the command.

use plotters::style::RGBColor;

/// Line colours, the first line first (matplotlib's defaults: distinct in print and on screen).
pub const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The colour of line `i`.
pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// A plotters error as the command's error.
pub fn to_anyhow<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}
