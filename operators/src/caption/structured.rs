//! The offline captioner: a factual caption made of kelp's own measurements — duration, camera
//! movement, tempo, light, dominant colours, on-screen text and overlays — written as plain
//! sentences. `caption_source = 'structured'` says so, so nobody mistakes it for a model's words.

use super::labels;

/// What the structured caption of one clip is made from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub duration_s: f64,
    pub camera: Option<String>,
    pub tempo: Option<&'static str>,
    pub lighting: Option<&'static str>,
    /// `low contrast` / `high contrast`, when notable.
    pub contrast: Option<&'static str>,
    pub colours: Vec<&'static str>,
    /// Mean share of the picture covered by text (`text` node).
    pub text_area: Option<f64>,
    /// Share covered by fixed overlays the crop removed (`crop` node).
    pub overlay_area: Option<f64>,
    /// Black and white (or one tint): the `exposure` node's colourfulness is next to nothing.
    pub monochrome: bool,
}

/// Hasler–Süsstrunk colourfulness under which a picture counts as black and white (a grey
/// picture scores ~0, a "slightly colourful" one ~15).
pub const MONOCHROME: f64 = 3.0;

/// Text covering more than this share of the picture is mentioned.
const TEXT_SHARE: f64 = 0.01;

/// The detailed and the short caption.
pub fn captions(f: &Facts) -> (String, String) {
    let mut detailed = vec![if f.monochrome {
        format!("A {:.1}-second clip in black and white.", f.duration_s)
    } else {
        format!("A {:.1}-second clip.", f.duration_s)
    }];
    let mut short: Vec<String> = Vec::new();
    if let Some(camera) = &f.camera {
        detailed.push(match camera.as_str() {
            "static" => "Camera: static.".to_string(),
            c => format!("Camera: {c}."),
        });
        short.push(if camera == "static" {
            "static shot".into()
        } else {
            camera.clone()
        });
    }
    if let Some(t) = f.tempo {
        // A still camera with movement in the picture: the scene moves, not the camera.
        if f.camera.as_deref() == Some("static") && t != "still" {
            detailed.push(format!(
                "Tempo: {t}; the camera is still, so the movement is in the scene."
            ));
        } else {
            detailed.push(format!("Tempo: {t}."));
        }
    }
    if let Some(l) = f.lighting {
        match f.contrast {
            Some(c) => detailed.push(format!("Lighting: {l}, {c}.")),
            None => detailed.push(format!("Lighting: {l}.")),
        }
        short.push(if l == "normal" {
            "normal light".to_string()
        } else {
            l.to_string()
        });
    }
    if f.monochrome {
        short.push("black and white".into());
    } else if !f.colours.is_empty() {
        detailed.push(format!("Dominant colours: {}.", join(&f.colours)));
        short.push(format!(
            "mostly {}",
            join(&f.colours[..f.colours.len().min(2)])
        ));
    }
    if let Some(t) = f.text_area.filter(|t| *t > TEXT_SHARE) {
        detailed.push(format!(
            "On-screen text covers about {:.0}% of the picture.",
            (t * 100.0).max(1.0)
        ));
        short.push("on-screen text".into());
    }
    if f.overlay_area.is_some_and(|a| a > 0.0) {
        detailed.push("A fixed overlay (logo or caption box) was cropped away.".into());
    }
    let short = if short.is_empty() {
        format!("a {:.1}-second clip", f.duration_s)
    } else {
        short.join(", ")
    };
    (detailed.join(" "), capitalise(&short))
}

/// "a", "a and b", "a, b and c".
fn join(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The facts of a clip, from its measurements and the colours of its frames.
pub fn facts(
    duration_s: f64,
    camera: &labels::CameraMeasures,
    luma_mean: Option<f64>,
    luma_sd: Option<f64>,
    colours: Vec<&'static str>,
    text_area: Option<f64>,
    overlay_area: Option<f64>,
) -> Facts {
    Facts {
        duration_s,
        camera: labels::camera_motion(camera),
        tempo: labels::tempo(camera.motion_mean),
        lighting: labels::lighting(luma_mean),
        contrast: labels::contrast(luma_sd),
        colours,
        text_area,
        overlay_area,
        monochrome: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caption_states_each_known_fact_and_skips_unknown_ones() {
        let f = Facts {
            duration_s: 2.44,
            camera: Some("pan left".into()),
            tempo: Some("slow"),
            lighting: Some("dark"),
            contrast: Some("low contrast"),
            colours: vec!["blue", "black", "grey"],
            text_area: Some(0.04),
            overlay_area: None,
            monochrome: false,
        };
        let (detailed, short) = captions(&f);
        assert_eq!(
            detailed,
            "A 2.4-second clip. Camera: pan left. Tempo: slow. Lighting: dark, low contrast. \
             Dominant colours: blue, black and grey. On-screen text covers about 4% of the picture."
        );
        assert_eq!(
            short,
            "Pan left, dark, mostly blue and black, on-screen text"
        );
        let film = captions(&Facts {
            duration_s: 3.2,
            camera: Some("static".into()),
            tempo: Some("slow"),
            lighting: Some("dim"),
            colours: vec!["grey", "black"],
            monochrome: true,
            ..Default::default()
        });
        assert_eq!(
            film,
            (
                "A 3.2-second clip in black and white. Camera: static. Tempo: slow; the camera is \
                 still, so the movement is in the scene. Lighting: dim."
                    .into(),
                "Static shot, dim, black and white".into()
            )
        );
        let bare = captions(&Facts {
            duration_s: 1.0,
            ..Default::default()
        });
        assert_eq!(
            bare,
            ("A 1.0-second clip.".into(), "A 1.0-second clip".into())
        );
    }
}
