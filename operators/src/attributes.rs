//! `attributes`: the source-level gate of the seed's filter chain (duration 5–60 s, short side
//! ≥ 256 px, aspect 1:3..3:1 in the report), computed from the probe. Every bound is a DAG
//! parameter and unset bounds do not filter; a video outside a bound is rejected before it is
//! decoded, with the bound it missed in `rejections`.

use serde::Deserialize;

use crate::context::VideoContext;
use crate::error::Result;
use crate::operator::{FrameSink, Operator};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product};

/// Parameters of the `attributes` node (each optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesConfig {
    /// Source duration bounds, seconds.
    pub min_duration_s: Option<f64>,
    pub max_duration_s: Option<f64>,
    /// Smallest short side of the displayed picture, pixels.
    pub min_short_side: Option<u32>,
    /// Displayed width ÷ height bounds (1:3 = 0.333, 3:1 = 3.0).
    pub min_aspect: Option<f64>,
    pub max_aspect: Option<f64>,
    /// Frame-rate bounds, frames per second.
    pub min_fps: Option<f64>,
    pub max_fps: Option<f64>,
}

pub struct Attributes {
    config: AttributesConfig,
}

impl Attributes {
    pub fn new(config: AttributesConfig) -> Self {
        Attributes { config }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::video(
        "short_side",
        ColumnType::Int64,
        "pixels, > 0: the displayed picture's shorter side (rotation applied)",
    ),
    ColumnSpec::video(
        "aspect_ratio",
        ColumnType::Float64,
        "displayed width ÷ height, > 0 (rotation applied)",
    ),
];

/// What this operator needs and writes (needs probe results).
pub fn outputs() -> Outputs {
    Outputs::default().needs(&[Product::PROBE]).columns(COLUMNS)
}

/// Short side and aspect of the displayed picture.
fn display_geometry(width: u32, height: u32, rotation: i32) -> (u32, f64) {
    let (w, h) = if rotation % 180 == 0 {
        (width, height)
    } else {
        (height, width)
    };
    (w.min(h), w as f64 / h.max(1) as f64)
}

fn check(
    value: f64,
    min: Option<f64>,
    max: Option<f64>,
    what: &str,
    unit: &str,
    key: &str,
) -> Option<String> {
    if let Some(lo) = min {
        if value < lo {
            return Some(format!("{what} {value:.3}{unit} is under min_{key} = {lo}"));
        }
    }
    if let Some(hi) = max {
        if value > hi {
            return Some(format!("{what} {value:.3}{unit} is over max_{key} = {hi}"));
        }
    }
    None
}

impl Operator for Attributes {
    fn kind(&self) -> &'static str {
        "attributes"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        let Some(p) = ctx.probe.clone() else {
            return Ok(None);
        };
        let (short, aspect) = display_geometry(p.width, p.height, p.rotation);
        ctx.set_video_value("short_side", i64::from(short));
        ctx.set_video_value("aspect_ratio", aspect);
        let c = &self.config;
        let problem = check(
            p.duration_s,
            c.min_duration_s,
            c.max_duration_s,
            "duration",
            " s",
            "duration_s",
        )
        .or_else(|| {
            check(
                short as f64,
                c.min_short_side.map(f64::from),
                None,
                "short side",
                " px",
                "short_side",
            )
        })
        .or_else(|| {
            check(
                aspect,
                c.min_aspect,
                c.max_aspect,
                "aspect ratio",
                "",
                "aspect",
            )
        })
        .or_else(|| check(p.fps, c.min_fps, c.max_fps, "frame rate", " fps", "fps"));
        if let Some(reason) = problem {
            ctx.reject(reason);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_swaps_the_displayed_sides() {
        assert_eq!(display_geometry(1920, 1080, 0), (1080, 1920.0 / 1080.0));
        let (short, aspect) = display_geometry(1920, 1080, 90);
        assert_eq!(short, 1080);
        assert!((aspect - 1080.0 / 1920.0).abs() < 1e-12);
    }

    #[test]
    fn bounds_name_the_key_they_enforce() {
        let r = check(3.0, Some(5.0), Some(60.0), "duration", " s", "duration_s").unwrap();
        assert_eq!(r, "duration 3.000 s is under min_duration_s = 5");
        assert!(check(30.0, Some(5.0), Some(60.0), "duration", " s", "duration_s").is_none());
        assert!(check(3.5, None, Some(3.0), "aspect ratio", "", "aspect")
            .unwrap()
            .contains("max_aspect = 3"));
    }
}
