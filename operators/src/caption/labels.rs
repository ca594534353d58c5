//! Labels in the style of the seed's "system prompts" (camera movement, tempo, lighting), each a
//! pure function of kelp's own measurements, so a label is as honest as the number behind it.
//! Shot size is not among them: nothing kelp measures tells a close-up from a wide shot.

use crate::clip_stage::Target;
use crate::context::VideoContext;

/// A camera speed (% of the picture width per second) under which the camera counts as still.
pub const CAMERA_STILL: f64 = 1.0;
/// Camera shake (RMS change of global motion, % width/s) above which a shot is `shaky`.
pub const SHAKY: f64 = 5.0;

/// The `motion` node's measurements of one clip (all `None` without a `motion` node).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CameraMeasures {
    pub pan_x: Option<f64>,
    pub pan_y: Option<f64>,
    pub zoom: Option<f64>,
    pub roll: Option<f64>,
    pub shake: Option<f64>,
    pub motion_mean: Option<f64>,
}

impl CameraMeasures {
    pub fn of(ctx: &VideoContext, clip: Target) -> Self {
        let v = |name| clip.value(ctx, name);
        CameraMeasures {
            pan_x: v("pan_x"),
            pan_y: v("pan_y"),
            zoom: v("zoom"),
            roll: v("roll"),
            shake: v("shake"),
            motion_mean: v("motion_mean"),
        }
    }
}

/// The camera's movement: `static`, `pan left/right`, `tilt up/down`, `zoom in/out`, `roll
/// clockwise/counter-clockwise`, two of them joined by "and" when both are clear, with `, shaky`
/// (or just `shaky`) when the camera shakes; `None` without measurements.
///
/// Zoom and roll are compared with pans by the speed they give a point a third of the way from
/// the centre to the edge, so the strongest movement names the shot.
pub fn camera_motion(m: &CameraMeasures) -> Option<String> {
    let (pan_x, pan_y) = (m.pan_x?, m.pan_y?);
    let (zoom, roll) = (m.zoom.unwrap_or(0.0), m.roll.unwrap_or(0.0));
    let radius = 0.35;
    let mut moves: Vec<(f64, &str)> = vec![
        (
            pan_x.abs(),
            if pan_x > 0.0 { "pan right" } else { "pan left" },
        ),
        (
            pan_y.abs(),
            if pan_y > 0.0 { "tilt down" } else { "tilt up" },
        ),
        (
            zoom.abs() * radius,
            if zoom > 0.0 { "zoom in" } else { "zoom out" },
        ),
        (
            roll.abs().to_radians() * radius * 100.0,
            if roll > 0.0 {
                "roll clockwise"
            } else {
                "roll counter-clockwise"
            },
        ),
    ];
    moves.sort_by(|a, b| b.0.total_cmp(&a.0));
    let shaky = m.shake.is_some_and(|s| s > SHAKY);
    let (first, second) = (moves[0], moves[1]);
    let movement = if first.0 < CAMERA_STILL {
        None
    } else if second.0 >= CAMERA_STILL.max(0.5 * first.0) {
        Some(format!("{} and {}", first.1, second.1))
    } else {
        Some(first.1.to_string())
    };
    Some(match (movement, shaky) {
        (Some(mv), true) => format!("{mv}, shaky"),
        (Some(mv), false) => mv,
        (None, true) => "shaky".into(),
        (None, false) => "static".into(),
    })
}

/// How much moves in the picture, from the mean optical-flow speed (% width/s): `still`,
/// `slow`, `moderate` or `fast`.
pub fn tempo(motion_mean: Option<f64>) -> Option<&'static str> {
    let m = motion_mean?;
    Some(if m < 1.0 {
        "still"
    } else if m < 5.0 {
        "slow"
    } else if m < 15.0 {
        "moderate"
    } else {
        "fast"
    })
}

/// The light of the picture from its mean luma (0–255): `dark`, `dim`, `normal` or `bright`.
pub fn lighting(luma_mean: Option<f64>) -> Option<&'static str> {
    let y = luma_mean?;
    Some(if y < 50.0 {
        "dark"
    } else if y < 90.0 {
        "dim"
    } else if y <= 180.0 {
        "normal"
    } else {
        "bright"
    })
}

/// `low contrast` / `high contrast` from the luma standard deviation (0–128), when notable.
pub fn contrast(luma_sd: Option<f64>) -> Option<&'static str> {
    let sd = luma_sd?;
    if sd < 25.0 {
        Some("low contrast")
    } else if sd > 75.0 {
        Some("high contrast")
    } else {
        None
    }
}

/// The labels as one line to append to a caption in training (the seed's "system prompt"),
/// e.g. `camera: pan left; tempo: slow; lighting: dark`; `None` when no label is known.
pub fn label_prompt(
    camera: Option<&str>,
    tempo: Option<&str>,
    lighting: Option<&str>,
) -> Option<String> {
    let parts: Vec<String> = [("camera", camera), ("tempo", tempo), ("lighting", lighting)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(pan_x: f64, pan_y: f64, zoom: f64, shake: f64) -> CameraMeasures {
        CameraMeasures {
            pan_x: Some(pan_x),
            pan_y: Some(pan_y),
            zoom: Some(zoom),
            roll: Some(0.0),
            shake: Some(shake),
            motion_mean: None,
        }
    }

    #[test]
    fn the_strongest_clear_movement_names_the_shot() {
        assert_eq!(
            camera_motion(&cam(-6.0, 0.3, 1.0, 0.5)).unwrap(),
            "pan left"
        );
        assert_eq!(
            camera_motion(&cam(6.0, 0.0, 0.0, 0.0)).unwrap(),
            "pan right"
        );
        assert_eq!(camera_motion(&cam(0.2, -4.0, 0.0, 0.0)).unwrap(), "tilt up");
        assert_eq!(camera_motion(&cam(0.1, 0.1, 12.0, 0.0)).unwrap(), "zoom in");
        assert_eq!(
            camera_motion(&cam(0.1, 0.1, -12.0, 0.0)).unwrap(),
            "zoom out"
        );
        assert_eq!(
            camera_motion(&cam(-5.0, -4.0, 0.0, 0.0)).unwrap(),
            "pan left and tilt up"
        );
    }

    #[test]
    fn a_still_camera_is_static_and_a_jittery_one_shaky() {
        assert_eq!(camera_motion(&cam(0.2, -0.3, 0.5, 0.1)).unwrap(), "static");
        assert_eq!(camera_motion(&cam(0.2, -0.3, 0.5, 6.0)).unwrap(), "shaky");
        assert_eq!(
            camera_motion(&cam(8.0, 0.0, 0.0, 6.0)).unwrap(),
            "pan right, shaky"
        );
        assert_eq!(camera_motion(&CameraMeasures::default()), None);
    }

    #[test]
    fn tempo_and_lighting_follow_their_measurements() {
        assert_eq!(tempo(Some(0.2)), Some("still"));
        assert_eq!(tempo(Some(30.0)), Some("fast"));
        assert_eq!(lighting(Some(20.0)), Some("dark"));
        assert_eq!(lighting(Some(220.0)), Some("bright"));
        assert_eq!(lighting(None), None);
        assert_eq!(
            label_prompt(Some("static"), None, Some("dark")).unwrap(),
            "camera: static; lighting: dark"
        );
        assert_eq!(label_prompt(None, None, None), None);
    }
}
