#!/usr/bin/env python3
"""Generates kelp's hostile-input corpus: tiny, deterministic files that break video tools in
the ways real crawls do, plus a few good videos to mix with them.

Usage: infra/make-broken-corpus.py OUT_DIR
Writes OUT_DIR/good/*.mp4 and OUT_DIR/broken/* and prints one line per file: name, what it is.
Needs the ffmpeg CLI. Same bytes every run (fixed seeds, single-threaded encodes).
"""
import os
import random
import struct
import subprocess
import sys

FF = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p"]


def ff(*args):
    subprocess.run([*FF, *args], check=True)


def lavfi(src):
    return ["-f", "lavfi", "-i", src]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def patch_durations(data, seconds):
    """Rewrites mvhd/mdhd/tkhd durations of an MP4 to claim `seconds` (data stays as it is)."""
    out = bytearray(data)
    for box in (b"mvhd", b"mdhd"):
        i = out.find(box)
        while i != -1:
            version = out[i + 4]
            if version == 0:
                scale = struct.unpack(">I", out[i + 16:i + 20])[0]
                struct.pack_into(">I", out, i + 20, min(seconds * scale, 2**32 - 1))
            i = out.find(box, i + 4)
    return bytes(out)


def rotate_tkhd(data, degrees):
    """Writes a display matrix rotating the (first) video track by `degrees` clockwise into its
    tkhd box, as phones do (FFmpeg 5.1's CLI has no option to write one)."""
    one, zero, w = 0x00010000, 0, 0x40000000
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    m = [cos * one, sin * one, zero, -sin * one, cos * one, zero, 0, 0, w]
    out = bytearray(data)
    i = out.find(b"tkhd")
    version = out[i + 4]
    off = i + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    struct.pack_into(">9i", out, off, *m)
    return bytes(out)


def minimal_mp4_without_streams():
    """ftyp + moov holding only an mvhd: a valid container with zero tracks."""
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 512, b"isomiso2")
    mvhd_body = struct.pack(">B3sIIII", 0, b"\0\0\0", 0, 0, 1000, 0) + struct.pack(">IH", 0x00010000, 0x0100) + b"\0" * 10
    mvhd_body += struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000) + b"\0" * 24 + struct.pack(">I", 1)
    mvhd = struct.pack(">I4s", 8 + len(mvhd_body), b"mvhd") + mvhd_body
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    return ftyp + moov


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    good = os.path.join(out, "good")
    bad = os.path.join(out, "broken")
    os.makedirs(good, exist_ok=True)
    os.makedirs(bad, exist_ok=True)
    made = []

    def note(name, what):
        made.append((name, what))

    # Good videos (two shots each so they yield clips).
    for i, (a, b) in enumerate([("testsrc2", "mandelbrot"), ("smptehdbars", "testsrc")]):
        p = os.path.join(good, f"good{i}.mp4")
        ff(*lavfi(f"{a}=size=320x180:rate=25,trim=duration=3"), *lavfi(f"{b}=size=320x180:rate=25,trim=duration=3"),
           "-filter_complex", "[0]format=yuv420p,setsar=1[a];[1]format=yuv420p,setsar=1[b];[a][b]concat=n=2:v=1:a=0",
           *X264, "-movflags", "+faststart", p)
        note(f"good/good{i}.mp4", "good: two 3 s shots")
    base_path = os.path.join(good, "good0.mp4")
    base = open(base_path, "rb").read()

    def b(name, data, what):
        write(os.path.join(bad, name), data)
        note(f"broken/{name}", what)

    b("zero-bytes.mp4", b"", "empty file")
    for pct in (1, 50, 99):
        b(f"truncated-{pct}pct.mp4", base[: len(base) * pct // 100], f"first {pct}% of a good file")
    for seed in (1, 2, 3):
        rng = random.Random(seed)
        head = bytearray(base)
        for _ in range(8):
            i = rng.randrange(0, min(400, len(head)))
            head[i] ^= 1 << rng.randrange(8)
        b(f"bitflip-header-{seed}.mp4", bytes(head), f"8 bit flips in the first 400 bytes (seed {seed})")
        body = bytearray(base)
        for _ in range(200):
            i = rng.randrange(len(body) // 10, len(body))
            body[i] = rng.randrange(256)
        b(f"bitflip-payload-{seed}.mp4", bytes(body), f"200 random bytes in the payload (seed {seed})")
    b("webpage.mp4", b"<!doctype html><html><body><h1>404 Not Found</h1></body></html>\n" * 20, "an HTML page named .mp4")
    ff(*lavfi("testsrc=size=64x64:rate=1"), "-frames:v", "1", "-f", "image2", "-c:v", "png", os.path.join(bad, "image.mp4"))
    note("broken/image.mp4", "a PNG image named .mp4")
    ff(*lavfi("sine=frequency=440:duration=2"), "-c:a", "aac", os.path.join(bad, "audio-only.mp4"))
    note("broken/audio-only.mp4", "audio stream only")
    b("no-streams.mp4", minimal_mp4_without_streams(), "a valid MP4 container with no tracks")
    ff(*lavfi("testsrc=size=320x180:rate=25"), "-frames:v", "0", *X264, os.path.join(bad, "zero-frames.mp4"))
    note("broken/zero-frames.mp4", "a video track with no frames")
    ff(*lavfi("testsrc2=size=320x180:rate=25"), "-frames:v", "1", *X264, os.path.join(bad, "one-frame.mp4"))
    note("broken/one-frame.mp4", "a single frame")
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=0.1"), *X264, os.path.join(bad, "tenth-second.mp4"))
    note("broken/tenth-second.mp4", "0.1 s of video")
    two = os.path.join(bad, "ten-hours-declared.tmp.mp4")
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=2"), *X264, two)
    b("ten-hours-declared.mp4", patch_durations(open(two, "rb").read(), 36000), "declares 10 hours, holds 2 s")
    os.remove(two)
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=4"), "-vf", "setpts='PTS+0.4*sin(N)/TB'", "-fps_mode", "vfr", *X264,
       os.path.join(bad, "vfr.mkv"))
    note("broken/vfr.mkv", "variable frame rate (jittered timestamps)")
    plain = os.path.join(bad, "rotate.tmp.mp4")
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=2"), *X264, plain)
    for deg in (90, 180, 270):
        b(f"rotate-{deg}.mp4", rotate_tkhd(open(plain, "rb").read(), deg), f"display matrix rotating {deg} degrees")
    os.remove(plain)
    for w, h in ((1, 1), (3, 5), (8192, 64)):
        ff(*lavfi("testsrc2=size=64x64:rate=25:duration=1"), "-vf", f"scale={w}:{h}", "-c:v", "ffv1", os.path.join(bad, f"size-{w}x{h}.mkv"))
        note(f"broken/size-{w}x{h}.mkv", f"odd picture size {w}x{h} (FFV1)")
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=2"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", os.path.join(bad, "10bit.mp4"))
    note("broken/10bit.mp4", "10-bit H.264")
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=2"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", os.path.join(bad, "444.mp4"))
    note("broken/444.mp4", "4:4:4 H.264")
    ff(*lavfi("testsrc2=size=320x180:rate=50:duration=2"), "-vf", "tinterlace=interleave_top,fieldorder=tff", *X264, "-flags", "+ilme+ildct",
       os.path.join(bad, "interlaced.mp4"))
    note("broken/interlaced.mp4", "interlaced H.264")
    ff(*lavfi("testsrc2=size=320x180:rate=25:duration=2"), *X264, "-bsf:v", "setts=pts=if(between(N\\,20\\,30)\\,PTS-20000\\,PTS):dts=if(between(N\\,20\\,30)\\,DTS-20000\\,DTS)",
       "-f", "mpegts", os.path.join(bad, "backwards-timestamps.ts"))
    note("broken/backwards-timestamps.ts", "timestamps jump backwards for 10 frames")
    inputs = lavfi("testsrc2=size=320x180:rate=25:duration=2")
    maps = ["-map", "0:v"]
    for i in range(8):
        inputs += lavfi(f"sine=frequency={300 + 50 * i}:duration=2")
        maps += ["-map", f"{i + 1}:a"]
    ff(*inputs, *maps, *X264, "-c:a", "aac", os.path.join(bad, "many-streams.mkv"))
    note("broken/many-streams.mkv", "1 video + 8 audio streams")
    mid = bytearray(base)
    for i in range(len(mid) // 2, len(mid) // 2 + 4096):
        mid[i] = 0
    b("zeroed-middle.mp4", bytes(mid), "4 KB of zeros in the middle of the video data (decoder errors mid-stream)")
    # Its own content: a byte-for-byte copy of a good file would (rightly) be rejected as an
    # exact copy of it, which is not what this item tests.
    ff(*lavfi("rgbtestsrc=size=320x180:rate=25,trim=duration=3"), *X264, "-movflags", "+faststart",
       os.path.join(bad, "name with spaces ünïcödé.mp4"))
    note("broken/name with spaces ünïcödé.mp4", "a good file with spaces and non-ASCII in its name")
    locked = os.path.join(bad, "unreadable.mp4")
    # A good file plus trailing bytes (distinct from it, so not an exact copy).
    write(locked, base + b"\0" * 16)
    os.chmod(locked, 0)
    note("broken/unreadable.mp4", "mode 000 (unreadable unless running as root)")
    loop = os.path.join(bad, "loop")
    os.makedirs(loop, exist_ok=True)
    link = os.path.join(loop, "again")
    if not os.path.islink(link):
        os.symlink("..", link)
    note("broken/loop/again", "a symlink loop back to its folder")
    for name, what in made:
        print(f"{name}\t{what}")


if __name__ == "__main__":
    main()
