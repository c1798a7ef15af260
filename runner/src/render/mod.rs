//! Drawing results as images: the bar chart of the `chart` sink (and of the live page next).

pub mod bar_chart;
pub mod text;
