//! Unit tests of `crop`: border extents, overlay detection and the crop decision.

use super::*;

fn letterboxed(w: u32, h: u32, bar: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                if y < bar || y >= h - bar {
                    0
                } else {
                    60 + ((x * 7 + y * 3) % 120) as u8
                }
            })
        })
        .collect()
}

#[test]
fn letterbox_bars_are_found_exactly() {
    let px = letterboxed(320, 240, 30);
    let e = extent(&px, 320, 240, 24.0, 20.0).unwrap();
    assert_eq!(
        e,
        Extent {
            top: 30,
            bottom: 210,
            left: 0,
            right: 320
        }
    );
}

#[test]
fn dark_frames_do_not_vote() {
    let dark = vec![5u8; 320 * 240];
    assert!(extent(&dark, 320, 240, 24.0, 20.0).is_none());
}

#[test]
fn the_agreed_extent_ignores_rare_outliers() {
    let mut v = vec![
        Extent {
            top: 30,
            bottom: 210,
            left: 0,
            right: 320
        };
        19
    ];
    v.push(Extent {
        top: 0,
        bottom: 240,
        left: 0,
        right: 320,
    });
    assert_eq!(
        agreed_extent(&v, 320, 240),
        Extent {
            top: 30,
            bottom: 210,
            left: 0,
            right: 320
        }
    );
}

#[test]
fn an_overlay_in_a_corner_is_cut_from_the_cheaper_side() {
    let frame = Rect::new(0, 0, 640, 360);
    let logo = Rect::new(560, 10, 60, 30);
    let r = cut_away(frame, logo);
    assert_eq!(
        r,
        Rect::new(0, 40, 640, 320),
        "cutting the top 40 rows keeps the most picture"
    );
    let caption = Rect::new(100, 300, 440, 40);
    assert_eq!(cut_away(frame, caption), Rect::new(0, 0, 640, 300));
}
