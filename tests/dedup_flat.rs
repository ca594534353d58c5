//! Black, single-colour and static-title clips never match each other through their flat,
//! low-quality frames: black and plain-colour frames have PDQ quality under 50 and are not
//! matched on, and title cards with different words are far apart; in the same run a textured
//! clip and its half-size copy still form a group.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn make(dir: &std::path::Path, name: &str, input: &str, vf: &str) {
    let path = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        input,
        "-t",
        "3",
        "-vf",
        vf,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
}

fn title(text: &str) -> String {
    format!("drawtext=text='{text}':fontcolor=white:fontsize=36:x=(w-text_w)/2:y=(h-text_h)/2")
}

#[test]
fn flat_clips_and_title_cards_do_not_match_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let colour = |c: &str, size: &str| format!("color={c}:size={size}:rate=25");
    make(&src, "black-a.mp4", &colour("black", "512x288"), "null");
    make(&src, "black-b.mp4", &colour("black", "384x216"), "null");
    make(&src, "white.mp4", &colour("white", "512x288"), "null");
    make(&src, "red.mp4", &colour("red", "512x288"), "null");
    make(&src, "navy.mp4", &colour("0x101840", "512x288"), "null");
    // Titles fading in from black: half their frames are black, the rest different words.
    let fade = |t: &str| format!("{},fade=in:st=0:d=1.5", title(t));
    make(
        &src,
        "title-one.mp4",
        &colour("black", "512x288"),
        &fade("CHAPTER ONE"),
    );
    make(
        &src,
        "title-two.mp4",
        &colour("black", "512x288"),
        &fade("CHAPTER TWO"),
    );
    make(
        &src,
        "title-end.mp4",
        &colour("0x101840", "512x288"),
        &title("THE END"),
    );
    let textured = "mandelbrot=size=384x216:rate=25:end_pts=100";
    make(&src, "textured.mp4", textured, "scale=512:288");
    make(&src, "textured-half.mp4", textured, "scale=256:144");
    let dag = tmp.path().join("dedup.toml");
    std::fs::write(
        &dag,
        "[source]\nuri = \"unused\"\n[output]\nuri = \"unused\"\n\
         [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n\
         [[node]]\nop = \"window\"\nmin_s = 0.5\nmax_s = 10.0\ntrim_cut_frames = 0\n\
         [[node]]\nop = \"signature\"\nsample_fps = 2.0\n\
         [[pass]]\nop = \"near_dedup\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    kelp_ok(&[
        "run",
        dag.to_str().unwrap(),
        "--source",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let file = "regexp_replace(c.uri, '^.*/', '')";
    // Every file was signed; flat ones only with frames too flat to match on.
    let quality = sql_json(
        &out,
        &format!(
            "SELECT {file} AS file, max(s.quality) AS q FROM signatures s \
             JOIN clips c USING (clip_id) GROUP BY {file} ORDER BY file"
        ),
    );
    let q = |name: &str| {
        quality
            .iter()
            .find(|r| text(r, "file") == name)
            .map(|r| int(r, "q"))
    };
    // Black and white clips may have no clip at all (the shot detector sees no shot in them);
    // the plain colours do, and every frame of theirs is too flat to match on.
    for flat in [
        "black-a.mp4",
        "black-b.mp4",
        "white.mp4",
        "red.mp4",
        "navy.mp4",
    ] {
        assert!(
            q(flat).is_none_or(|q| q < 50),
            "{flat}: quality {:?}",
            q(flat)
        );
    }
    assert!(
        q("red.mp4").is_some() && q("navy.mp4").is_some(),
        "{quality:?}"
    );
    for card in ["title-one.mp4", "title-two.mp4", "title-end.mp4"] {
        assert!(
            q(card).is_some_and(|q| q >= 50),
            "a title card has detail: {card} {:?}",
            q(card)
        );
    }
    let groups = sql_json(
        &out,
        &format!(
            "SELECT {file} AS file, d.kept FROM duplicates d JOIN clips c USING (clip_id) \
             ORDER BY file"
        ),
    );
    let got: Vec<(String, bool)> = groups
        .iter()
        .map(|r| (text(r, "file").to_string(), r["kept"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("textured-half.mp4".to_string(), false),
            ("textured.mp4".to_string(), true)
        ],
        "only the textured pair is a group"
    );
}
